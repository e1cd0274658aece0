import CrestCore
import Foundation
import GRDB

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
    private let pool: DatabasePool

    /// Opens (creating if needed) `crest.sqlite` in `directory` and applies pending migrations.
    public init(directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        pool = try DatabasePool(
            path: directory.appending(path: "crest.sqlite").path, configuration: configuration)
        try SQLiteMigrations.migrator.migrate(pool)
    }

    public func createSale(_ sale: Sale) async throws {
        try await pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO sales (\(SQLiteRows.saleColumns))
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)
                    """,
                arguments: [
                    sale.id.description, sale.sku, sale.title, sale.price.amount, sale.price.currency.code,
                    sale.perBuyerLimit, SQLiteRows.millis(sale.startsAt), sale.endsAt.map(SQLiteRows.millis),
                    sale.paymentWindowSeconds, SQLiteRows.millis(sale.createdAt), sale.stock.total,
                    sale.stock.available, sale.stock.reserved, sale.stock.sold,
                ])
        }
    }

    public func sale(_ id: SaleID) async throws -> Sale? {
        try await pool.read { db in
            try Row.fetchOne(
                db, sql: "SELECT \(SQLiteRows.saleColumns) FROM sales WHERE id = ?", arguments: [id.description]
            ).map(SQLiteRows.sale)
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
        try await pool.read { db in
            try Self.fetchOrder(db, id: id)
        }
    }

    public func order(saleID: SaleID, idempotencyKey: String) async throws -> Order? {
        try await pool.read { db in
            try Self.fetchOrder(db, saleID: saleID, idempotencyKey: idempotencyKey)
        }
    }

    public func gateSnapshot(for saleID: SaleID) async throws -> GateSnapshot? {
        try await pool.read { db in
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT \(SQLiteRows.saleColumns) FROM sales WHERE id = ?",
                    arguments: [saleID.description])
            else { return nil }
            var holdings: [String: Int] = [:]
            var keys: [String] = []
            let orders = try Row.fetchCursor(
                db, sql: "SELECT buyer, quantity, status, idempotency_key FROM orders WHERE sale_id = ?",
                arguments: [saleID.description])
            while let order = try orders.next() {
                keys.append(order["idempotency_key"])
                if Order.Status(rawValue: order["status"])?.isLive == true {
                    holdings[order["buyer"], default: 0] += order["quantity"] as Int
                }
            }
            return GateSnapshot(
                sale: try SQLiteRows.sale(row), version: row["version"], holdings: holdings, idempotencyKeys: keys)
        }
    }

    public func reserve(_ batch: [Reservation]) async throws -> ReservationBatchResult {
        try await pool.write { db in
            var ledger = try ReservationLedger(db: db, saleIDs: Set(batch.map(\.request.saleID)))
            let outcomes = try batch.map { try ledger.decide($0) }
            let counters = try ledger.save()
            return ReservationBatchResult(outcomes: outcomes, counters: counters)
        }
    }

    public func transition(_ id: OrderID, by event: Order.Event, at now: Date) async throws -> TransitionResult {
        try await pool.write { db in
            guard var order = try Self.fetchOrder(db, id: id) else { throw OrderError.orderNotFound }
            let target = try order.status.applying(event)
            let changed = target != order.status
            if changed {
                // Each event moves the order's units from one counter to another.
                let (from, to) =
                    switch event {
                    case .pay: ("reserved", "sold")
                    case .cancel, .expire: ("reserved", "available")
                    }
                try db.execute(
                    sql: "UPDATE sales SET \(from) = \(from) - ?, \(to) = \(to) + ?, version = version + 1 WHERE id = ?",
                    arguments: [order.quantity, order.quantity, order.saleID.description])
                order.status = target
                order.updatedAt = now
                try db.execute(
                    sql: "UPDATE orders SET status = ?, updated_at = ? WHERE id = ?",
                    arguments: [target.rawValue, SQLiteRows.millis(now), id.description])
            }
            let row = try Row.fetchOne(
                db, sql: "SELECT total, available, reserved, sold, version FROM sales WHERE id = ?",
                arguments: [order.saleID.description])
            guard let row else { throw CorruptRowError(column: "orders.sale_id") }
            return TransitionResult(
                order: order, changed: changed,
                counters: CounterSnapshot(counters: SQLiteRows.counters(row), version: row["version"]))
        }
    }

    public func ping() async throws {
        _ = try await pool.read { db in try Int.fetchOne(db, sql: "SELECT 1") }
    }

    public func close() async throws {
        try pool.close()
    }

    static func fetchOrder(_ db: Database, id: OrderID) throws -> Order? {
        try Row.fetchOne(
            db, sql: "SELECT \(SQLiteRows.orderColumns) FROM orders WHERE id = ?", arguments: [id.description]
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
