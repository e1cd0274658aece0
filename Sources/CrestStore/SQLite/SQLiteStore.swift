import CrestCore
import CrestSQLiteWAL
import Foundation
import GRDB
import GRDBSQLite

/// The embedded store: one SQLite file in WAL mode with `synchronous=FULL`, through a GRDB
/// `DatabasePool` (one serialized writer, concurrent readers).
///
/// With FULL, a transaction is on disk when its commit returns, so an order answered `201`
/// survives a power loss, not only a crash of the process. FULL costs one fsync per commit; the
/// engine's batcher makes that one fsync per batch.
///
/// ```swift
/// let store = try SQLiteStore(directory: URL(filePath: "./crest-data"))
/// let sale = try await store.sale(id)
/// ```
public final class SQLiteStore: Store {
    let pool: DatabasePool
    private let pointReads: OrderPointReads

    /// Opens (creating if needed) `crest.sqlite` in `directory` and applies pending migrations.
    public init(directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // Each transaction's log frames in a few writes instead of two per frame (CrestSQLiteWAL).
        let installed = crest_sqlite_wal_install()
        guard installed == SQLITE_OK else { throw DatabaseError(resultCode: ResultCode(rawValue: installed)) }
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        pool = try DatabasePool(
            path: directory.appending(path: "crest.sqlite").path, configuration: configuration)
        // Only now: a pool switches its writer to WAL after `prepareDatabase` and sets
        // `synchronous = NORMAL` while doing so (commits not synced until a checkpoint — an
        // acknowledged order could vanish with the power).
        try pool.barrierWriteWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        try SQLiteMigrations.migrator.migrate(pool)
        pointReads = OrderPointReads(pool: pool)
    }

    public func createSale(_ sale: Sale) async throws {
        try await pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO sales (\(SQLiteRows.saleColumns))
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)
                    """,
                arguments: [
                    sale.id.description, sale.sku, sale.title, sale.price.amount, sale.price.currency.code,
                    sale.perBuyerLimit, SQLiteRows.millis(sale.startsAt), sale.endsAt.map(SQLiteRows.millis),
                    sale.paymentWindowSeconds, SQLiteRows.millis(sale.createdAt), sale.stock.total,
                    sale.stock.available, sale.stock.reserved, sale.stock.sold, sale.limits.storedJSON,
                ])
        }
    }

    public func updateSaleLimits(_ id: SaleID, to limits: SaleLimits) async throws -> Sale? {
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE sales SET limits = ? WHERE id = ?", arguments: [limits.storedJSON, id.description])
            return try Row.fetchOne(
                db, sql: "SELECT \(SQLiteRows.saleColumns) FROM sales WHERE id = ?", arguments: [id.description]
            ).map(SQLiteRows.sale)
        }
    }

    public func sale(_ id: SaleID) async throws -> Sale? {
        try await pool.read { db in
            try Row.fetchOne(
                db, sql: "SELECT \(SQLiteRows.saleColumns) FROM sales WHERE id = ?", arguments: [id.description]
            ).map(SQLiteRows.sale)
        }
    }

    public func counters(of saleID: SaleID) async throws -> CounterSnapshot? {
        try await pool.read { db in
            try Row.fetchOne(
                db, sql: "SELECT total, available, reserved, sold, version FROM sales WHERE id = ?",
                arguments: [saleID.description]
            ).map { CounterSnapshot(counters: SQLiteRows.counters($0), version: $0["version"]) }
        }
    }

    public func sales(after: SaleID?, limit: Int) async throws -> [Sale] {
        try await pool.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT \(SQLiteRows.saleColumns) FROM sales WHERE id > ? ORDER BY id LIMIT ?",
                arguments: [after?.description ?? "", limit]
            ).map(SQLiteRows.sale)
        }
    }

    public func order(_ id: OrderID) async throws -> Order? {
        try await pointReads.order(id)
    }

    /// Rounds of combined reads by id so far (`OrderPointReads`; for tests).
    var pointReadRounds: Int { pointReads.rounds }

    /// One seek each, in one read transaction: a batch job names a few dozen orders at most, and
    /// SQLite evaluates an `IN` list of constants with a temporary B-tree per statement run.
    public func orders(ids: [OrderID]) async throws -> [OrderID: Order] {
        guard !ids.isEmpty else { return [:] }
        return try await pool.read { db in
            var orders: [OrderID: Order] = [:]
            for id in ids {
                if let order = try Self.fetchOrder(db, id: id) { orders[id] = order }
            }
            return orders
        }
    }

    public func order(saleID: SaleID, idempotencyKey: String) async throws -> Order? {
        try await pool.read { db in
            try Self.fetchOrder(db, saleID: saleID, idempotencyKey: idempotencyKey)
        }
    }

    public func holdings(of buyer: String, in saleID: SaleID) async throws -> Int {
        try await pool.read { db in
            try Int.fetchOne(
                db,
                sql: """
                    SELECT COALESCE(SUM(quantity), 0) FROM orders
                    WHERE sale_id = ? AND buyer = ? AND status IN \(StoreRules.liveStatusesSQL)
                    """,
                arguments: [saleID.description, buyer]) ?? 0
        }
    }

    /// Every order of a sale, for its gate (by column: buyer, quantity, status, key). The sale's
    /// rows are found in its index, whose order (by buyer) is not the table's: looked up one by
    /// one from it they are read from all over the file. Their row ids, sorted, read them in the
    /// table's order instead: a sale's first order after a restart with 100,000 orders waited
    /// 334–406 ms for its gate, now 150–245 ms (Benchmarks/restart.sh, RESULTS.md).
    static let gateOrdersSQL = """
        SELECT buyer, quantity, status, idempotency_key FROM orders
        WHERE rowid IN (SELECT rowid FROM orders WHERE sale_id = ?)
        """

    public func gateSnapshot(for saleID: SaleID) async throws -> GateSnapshot? {
        try await pool.read { db in
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT \(SQLiteRows.saleColumns) FROM sales WHERE id = ?",
                    arguments: [saleID.description])
            else { return nil }
            var holdings: [String: Int] = [:]
            var keys: [String] = []
            let orders = try Row.fetchCursor(db, sql: Self.gateOrdersSQL, arguments: [saleID.description])
            while let order = try orders.next() {
                keys.append(order[3])
                if Order.Status(rawValue: order[2])?.isLive == true {
                    holdings[order[0], default: 0] += order[1] as Int
                }
            }
            return GateSnapshot(
                sale: try SQLiteRows.sale(row), version: row["version"], holdings: holdings, idempotencyKeys: keys)
        }
    }

    /// Runs its transaction on the calling thread, which it blocks until the commit is synced: the
    /// engine calls it from its batcher's own thread (`prefersCommitterThread`). The pool's
    /// asynchronous write went to the writer's queue and back — two thread wake-ups per batch, in a
    /// chain that every order of the batch waits for (the machine's idle time fell by 1–6 µs per
    /// order in every pair measured; Benchmarks/RESULTS.md). With the writer's queue idle,
    /// `DispatchQueue.sync` runs the transaction right here; otherwise it waits its turn, as the
    /// asynchronous write did.
    public func reserve(_ batch: [Reservation]) async throws -> ReservationBatchResult {
        try writeOnCallingThread { db in
            var ledger = try SQLiteReservationLedger(db: db, saleIDs: Set(batch.map(\.request.saleID)))
            let outcomes = try batch.map { try ledger.decide($0) }
            let counters = try ledger.save()
            return ReservationBatchResult(outcomes: outcomes, counters: counters)
        }
    }

    /// The pool's synchronous write: a function of its own so that an `async` caller gets it and
    /// not the asynchronous overload.
    private func writeOnCallingThread<T>(_ body: (Database) throws -> T) throws -> T {
        try pool.write(body)
    }

    public func transition(_ id: OrderID, by event: Order.Event, at now: Date) async throws -> TransitionResult {
        guard let result = try await transitions([TransitionRequest(orderID: id, event: event)], at: now)[0] else {
            throw OrderError.orderNotFound
        }
        return result
    }

    public func transitions(_ requests: [TransitionRequest], at now: Date) async throws -> [TransitionResult?] {
        try await pool.write { db in
            try requests.map { request in
                try Self.fetchOrder(db, id: request.orderID).map { try Self.apply(request.event, to: $0, in: db, at: now) }
            }
        }
    }

    public func cancelAttempt(saleID: SaleID, idempotencyKey: String, buyer: String?, at now: Date) async throws
        -> AttemptCancellationResult
    {
        try await pool.write { db in
            if let order = try Self.fetchOrder(db, saleID: saleID, idempotencyKey: idempotencyKey),
                buyer == nil || buyer == order.buyer
            {
                return .order(try Self.apply(.cancel, to: order, in: db, at: now))
            }
            guard try Int.fetchOne(db, sql: "SELECT 1 FROM sales WHERE id = ?", arguments: [saleID.description]) != nil
            else { throw OrderError.saleNotFound }
            let recordBuyer = buyer ?? StoreRules.anyBuyer
            try db.execute(
                sql: """
                    INSERT INTO cancelled_attempts (sale_id, idempotency_key, buyer, cancelled_at) VALUES (?, ?, ?, ?)
                    ON CONFLICT DO NOTHING
                    """,
                arguments: [saleID.description, idempotencyKey, recordBuyer, SQLiteRows.millis(now)])
            let at = try Int64.fetchOne(
                db,
                sql: """
                    SELECT cancelled_at FROM cancelled_attempts WHERE sale_id = ? AND idempotency_key = ? AND buyer = ?
                    """,
                arguments: [saleID.description, idempotencyKey, recordBuyer])
            return .recorded(at: SQLiteRows.date(at ?? SQLiteRows.millis(now)))
        }
    }

    public func flagOrder(_ id: OrderID, _ flag: OrderFlag) async throws {
        try await pool.write { db in
            try Self.flag(id, flag, in: db)
            guard db.changesCount == 1 else { throw OrderError.orderNotFound }
        }
    }

    public func orders(matching filter: OrderFilter, after: OrderID?, limit: Int) async throws -> [Order] {
        try await pool.read { db in
            var conditions = ["id > ?"]
            var arguments: StatementArguments = [after?.description ?? ""]
            if let status = filter.status {
                conditions.append("status = ?")
                _ = arguments.append(contentsOf: [status.rawValue])
            }
            if filter.flaggedOnly { conditions.append("flag IS NOT NULL") }
            /// A page of the orders that also meet `extra`.
            func page(_ extra: [String], _ extraArguments: StatementArguments) throws -> [Order] {
                try Row.fetchAll(
                    db,
                    sql: """
                        SELECT \(SQLiteRows.orderColumns) FROM orders
                        WHERE \((conditions + extra).joined(separator: " AND ")) ORDER BY id LIMIT ?
                        """,
                    arguments: arguments + extraArguments + [limit]
                ).map(SQLiteRows.order)
            }
            guard let saleID = filter.saleID?.description else { return try page([], []) }
            // A sale's orders, in id order. The sales' index (`orders_by_sale_buyer`) finds them
            // but not in id order: every page would read and sort all of the sale's orders (27 ms a
            // page for a sale of 25,000 — a listing quadratic in the sale). So first the orders in
            // id order, at most `scanBudget` of them past the cursor (or twenty pages): a flash
            // sale that holds most orders fills its page there (0.4 ms). Only a sale too sparse
            // among the orders for that goes to its index (a few orders among many: a small sort).
            // `+sale_id` keeps the planner off the sales' index in the scan. Flagged orders have an
            // index of their own.
            guard !filter.flaggedOnly else { return try page(["sale_id = ?"], [saleID]) }
            let bound = try String.fetchOne(
                db, sql: "SELECT id FROM orders WHERE id > ? ORDER BY id LIMIT 1 OFFSET ?",
                arguments: [after?.description ?? "", max(Self.scanBudget, limit * 20) - 1])
            guard let bound else { return try page(["+sale_id = ?"], [saleID]) }
            let scanned = try page(["+sale_id = ?", "id <= ?"], [saleID, bound])
            return scanned.count == limit ? scanned : try page(["sale_id = ?"], [saleID])
        }
    }

    /// Orders read in id order past a listing's cursor before a sale's page is looked for through
    /// the sales' index instead: a sale that holds a twentieth of the orders or more fills a page
    /// of 200 within it (a longer page gets twenty times its length).
    static let scanBudget = 4_000

    public func events(of orderID: OrderID) async throws -> [OrderEvent] {
        try await pool.read { db in
            try Row.fetchAll(
                db, sql: "SELECT \(SQLiteRows.eventColumns) FROM order_events WHERE order_id = ? ORDER BY sequence",
                arguments: [orderID.description]
            ).map(SQLiteRows.event)
        }
    }

    public func eventFeed(after: Int64, limit: Int) async throws -> EventFeedPage {
        try await pool.read { db in
            let events = try Row.fetchAll(
                db,
                sql: """
                    SELECT \(SQLiteRows.eventColumns), feed_position FROM order_events
                    WHERE feed_position > ? ORDER BY feed_position LIMIT ?
                    """,
                arguments: [after, limit]
            ).map { FeedEvent(position: $0["feed_position"], event: try SQLiteRows.event($0)) }
            let head = try Int64.fetchOne(db, sql: "SELECT IFNULL(MAX(feed_position), 0) FROM order_events") ?? 0
            return EventFeedPage(events: events, head: head)
        }
    }

    /// Applies `event` to `order` inside the caller's write transaction: status, stock and event,
    /// or the `confirm_after_cancel` flag for a payment that came too late.
    static func apply(_ event: Order.Event, to order: Order, in db: Database, at now: Date) throws -> TransitionResult {
        var order = order
        let transition = StoreRules.transition(event, of: order)
        if transition.change == .applied {
            if let (from, to) = transition.move {
                try db.cachedStatement(
                    sql: """
                        UPDATE sales SET \(from) = \(from) - ?, \(to) = \(to) + ?, version = version + 1 WHERE id = ?
                        """
                ).execute(arguments: [order.quantity, order.quantity, order.saleID.description])
            }
            order.status = transition.target
            order.updatedAt = now
            try db.cachedStatement(sql: "UPDATE orders SET status = ?, updated_at = ? WHERE id = ?")
                .execute(arguments: [transition.target.rawValue, SQLiteRows.millis(now), order.id.description])
            try SQLiteEvents.appendNext(db, OrderEvent.Kind(event), of: order, at: now)
        }
        if transition.flagsLateConfirm {
            let lateConfirm = OrderFlag(reason: .confirmAfterCancel, flaggedAt: now)
            try Self.flag(order.id, lateConfirm, in: db)
            order.flag = lateConfirm
        }
        let row = try Row.fetchOne(
            db.cachedStatement(sql: "SELECT total, available, reserved, sold, version FROM sales WHERE id = ?"),
            arguments: [order.saleID.description])
        guard let row else { throw CorruptRowError(column: "orders.sale_id") }
        let counters = SQLiteRows.counters(row)
        // Pair of the table's CHECKs: the counters read back after the move are conserved.
        precondition(counters.isConserved, "sale \(order.saleID) not conserved after \(event): \(counters)")
        return TransitionResult(
            order: order, change: transition.change, counters: CounterSnapshot(counters: counters, version: row["version"]))
    }

    static func flag(_ id: OrderID, _ flag: OrderFlag, in db: Database) throws {
        try db.execute(
            sql: "UPDATE orders SET flag = ?, flagged_at = ? WHERE id = ?",
            arguments: [flag.reason.rawValue, SQLiteRows.millis(flag.flaggedAt), id.description])
    }

    public var prefersCommitterThread: Bool { true }

    /// GRDB's pool has no waiters to count: its writer is one, and readers are many.
    public var connectionWaiters: Int { 0 }

    public func ping() async throws {
        _ = try await pool.read { db in try Int.fetchOne(db, sql: "SELECT 1") }
    }

    public func close() async throws {
        try pool.close()
    }

    static func fetchOrder(_ db: Database, id: OrderID) throws -> Order? {
        try Row.fetchOne(
            db.cachedStatement(sql: "SELECT \(SQLiteRows.orderColumns) FROM orders WHERE id = ?"),
            arguments: [id.description]
        ).map(SQLiteRows.order)
    }

    /// Runs once per reservation inside the batch transaction, hence the cached statement.
    static func fetchOrder(_ db: Database, saleID: SaleID, idempotencyKey: String) throws -> Order? {
        try Row.fetchOne(
            db.cachedStatement(
                sql: "SELECT \(SQLiteRows.orderColumns) FROM orders WHERE sale_id = ? AND idempotency_key = ?"),
            arguments: [saleID.description, idempotencyKey]
        ).map(SQLiteRows.order)
    }
}
