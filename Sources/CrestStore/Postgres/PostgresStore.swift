import CrestConcurrency
import CrestCore
import Foundation
import Logging
import Metrics
import PostgresNIO
import Synchronization

/// The store for several nodes: one PostgreSQL database shared by every Crest node, through
/// postgres-nio's `PostgresClient` (a pool of connections).
///
/// The same promises as the embedded store, across processes: each batch of reservations is one
/// transaction that locks its sales' rows (`FOR UPDATE`, in id order), decides every reservation
/// against the committed state, writes its orders, events and jobs set-based (`UNNEST` of
/// arrays), and moves the counters with a conditional `UPDATE … WHERE available >= n`; two nodes
/// batching on the same sale take turns on its row, so neither can sell what the other sold.
/// Jobs are claimed with `FOR UPDATE SKIP LOCKED`; changes other nodes must hear of (jobs due,
/// stock given back) are announced with `NOTIFY` (see `changes()`).
///
/// ```swift
/// let store = try await PostgresStore.connect(url: "postgres://crest@127.0.0.1:5432/crest", logger: logger)
/// ```
public final class PostgresStore: Store {
    /// The connection pool and the task running it; replaced when a connection lease is lost.
    let pool: Mutex<Pool>
    let configuration: PostgresClient.Configuration
    let logger: Logger
    let listener: PostgresListener
    /// How long a store call waits for a pooled connection before it answers "unavailable".
    let leaseTimeout: Duration
    /// How long a store call that holds a connection waits for PostgreSQL's answer before it
    /// answers "unavailable" and closes the connection.
    let answerTimeout: Duration
    /// Store calls waiting for a connection now (`connectionWaiters`).
    let waiting = Atomic<Int>(0)
    /// Each sale's row as this node's last batch left it, for the one-statement path.
    private let lastViews = Mutex(PostgresLastViews())
    /// The connection the one-statement path's statements are queued on, in order (internal:
    /// the tests ask it what it prepared).
    let lane: PostgresLane
    /// Store calls answered "unavailable" for want of a connection (`lease`) or of an answer
    /// (`answer`) in time.
    let timeoutCounters = (
        lease: Counter(label: "crest_database_timeouts_total", dimensions: [("kind", "lease")]),
        answer: Counter(label: "crest_database_timeouts_total", dimensions: [("kind", "answer")])
    )
    private let batchPaths = Mutex<[PostgresBatchPath: Int]>([:])
    private let batchPathCounters = Dictionary(
        uniqueKeysWithValues: PostgresBatchPath.allCases.map {
            ($0, Counter(label: "crest_postgres_reservation_batches_total", dimensions: [("path", $0.rawValue)]))
        })

    /// Connects to `url` (`postgres://user:password@host:port/database`, `?sslmode=disable|prefer|require`),
    /// applies pending migrations (one node at a time) and returns the store. A call PostgreSQL
    /// does not answer within `answerTimeout` is answered unavailable; the connection listening for
    /// other nodes' changes is asked every `listenerProbe` whether it still answers (`PostgresListener`).
    public static func connect(
        url: String, logger: Logger, maxConnections: Int = 20, leaseTimeout: Duration = .seconds(2),
        answerTimeout: Duration = .seconds(10), listenerProbe: Duration = .seconds(10)
    ) async throws -> PostgresStore {
        let parsed = try PostgresURL(url)
        var configuration = parsed.client
        configuration.options.maximumConnections = maxConnections
        configuration.options.connectTimeout = .seconds(5)
        try await PostgresMigrations.migrate(parsed.connection, connectWithin: answerTimeout, logger: logger)
        let store = PostgresStore(
            configuration: configuration, listening: parsed.connection, leaseTimeout: leaseTimeout,
            answerTimeout: answerTimeout, listenerProbe: listenerProbe, logger: logger)
        await store.listener.start()
        return store
    }

    private init(
        configuration: PostgresClient.Configuration, listening: PostgresConnection.Configuration,
        leaseTimeout: Duration, answerTimeout: Duration, listenerProbe: Duration, logger: Logger
    ) {
        self.logger = logger
        self.leaseTimeout = leaseTimeout
        self.answerTimeout = answerTimeout
        self.configuration = configuration
        pool = Mutex(Pool(configuration: configuration, logger: logger))
        listener = PostgresListener(
            configuration: listening, probeInterval: listenerProbe, answerTimeout: answerTimeout, logger: logger)
        lane = PostgresLane(
            configuration: listening, connectTimeout: leaseTimeout, answerTimeout: answerTimeout,
            timedOut: timeoutCounters.answer, logger: logger)
    }

    // MARK: Sales

    public func createSale(_ sale: Sale) async throws {
        _ = try await rows(
            """
            INSERT INTO sales (\(unescaped: PostgresRows.saleColumns))
            VALUES (\(sale.id.description), \(sale.sku), \(sale.title), \(sale.price.amount), \(sale.price.currency.code),
                \(sale.perBuyerLimit), \(PostgresRows.millis(sale.startsAt)), \(sale.endsAt.map(PostgresRows.millis)),
                \(sale.paymentWindowSeconds), \(PostgresRows.millis(sale.createdAt)), \(sale.stock.total),
                \(sale.stock.available), \(sale.stock.reserved), \(sale.stock.sold), 0, \(sale.limits.storedJSON))
            """)
    }

    public func updateSaleLimits(_ id: SaleID, to limits: SaleLimits) async throws -> Sale? {
        try await rows(
            """
            UPDATE sales SET limits = \(limits.storedJSON) WHERE id = \(id.description)
            RETURNING \(unescaped: PostgresRows.saleColumns)
            """
        ).first.map { try PostgresRows.sale($0).sale }
    }

    public func sale(_ id: SaleID) async throws -> Sale? {
        try await rows(
            "SELECT \(unescaped: PostgresRows.saleColumns) FROM sales WHERE id = \(id.description)"
        ).first.map { try PostgresRows.sale($0).sale }
    }

    public func counters(of saleID: SaleID) async throws -> CounterSnapshot? {
        try await rows(
            "SELECT total, available, reserved, sold, version FROM sales WHERE id = \(saleID.description)"
        ).first.map(PostgresRows.snapshot)
    }

    public func sales(after: SaleID?, limit: Int) async throws -> [Sale] {
        try await rows(
            """
            SELECT \(unescaped: PostgresRows.saleColumns) FROM sales WHERE id > \(after?.description ?? "")
            ORDER BY id LIMIT \(limit)
            """
        ).map { try PostgresRows.sale($0).sale }
    }

    public func holdings(of buyer: String, in saleID: SaleID) async throws -> Int {
        let rows = try await rows(
            """
            SELECT COALESCE(SUM(quantity), 0)::bigint FROM orders
            WHERE sale_id = \(saleID.description) AND buyer = \(buyer) AND status IN \(unescaped: StoreRules.liveStatusesSQL)
            """)
        return Int(try rows.first?.decode(Int64.self) ?? 0)
    }

    public func gateSnapshot(for saleID: SaleID) async throws -> GateSnapshot? {
        // One snapshot for the sale's row and its orders: counters, keys and holdings agree.
        try await transaction(begin: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") { connection in
            guard
                let row = try await connection.query(
                    "SELECT \(unescaped: PostgresRows.saleColumns) FROM sales WHERE id = \(saleID.description)",
                    logger: self.logger
                ).collect().first
            else { return nil }
            let (sale, version) = try PostgresRows.sale(row)
            var holdings: [String: Int] = [:]
            var keys: [String] = []
            let orders = try await connection.query(
                "SELECT buyer, quantity, status, idempotency_key FROM orders WHERE sale_id = \(saleID.description)",
                logger: self.logger)
            for try await (buyer, quantity, status, key) in orders.decode((String, Int, String, String).self) {
                keys.append(key)
                if Order.Status(rawValue: status)?.isLive == true { holdings[buyer, default: 0] += quantity }
            }
            return GateSnapshot(sale: sale, version: version, holdings: holdings, idempotencyKeys: keys)
        }
    }

    /// A batch on one sale whose row this node wrote last tries one statement first (see
    /// `PostgresReservationLedger`), queued on the lane behind the sale's batch still in flight if
    /// there is one; otherwise, or when that writes nothing, the six statements.
    public func reserve(_ batch: [Reservation]) async throws -> ReservationBatchResult {
        if let answer = try await reserveInOneStatement(batch) { return answer.result }
        lastViews.withLock { $0.startLocked(batch) }
        let answer: PostgresReservationLedger.Answer
        do {
            answer = try await retryingTransaction { connection in
                try await PostgresReservationLedger.run(batch, on: connection, logger: self.logger).get()
            }
        } catch {
            lastViews.withLock { $0.finishLocked(batch, answer: nil) }
            throw error
        }
        lastViews.withLock { $0.finishLocked(batch, answer: answer) }
        count(.locked)
        return answer.result
    }

    /// Two batches may be in flight while batches go in one statement: the second is decided on
    /// the first's decisions and queued behind it on the lane. One otherwise.
    public var reservationBatchesInFlight: Int { lastViews.withLock { $0.chaining } ? 2 : 1 }

    public var overlapsReservationBatches: Bool { true }

    /// The one-statement path: its answer, or `nil` when the batch is to take the six statements
    /// (not tried, or written nothing).
    private func reserveInOneStatement(_ batch: [Reservation]) async throws -> PostgresReservationLedger.Answer? {
        guard lastViews.withLock({ $0.mayTryOneStatement(batch) }) else { return nil }
        // Not reaching the server here leaves it to the six statements' pool to say so.
        guard let connection = try? await lane.connection() else { return nil }
        guard let started = lastViews.withLock({ $0.startOneStatement(batch) { lane.send($0, on: connection) } }) else {
            return nil
        }
        let answer: PostgresReservationLedger.Answer?
        do {
            answer = try started.statement.answer(try await started.answer.get())
        } catch {
            // Nothing is known of the sale now: its next batch reads it again.
            lastViews.withLock { $0.finish(started, answer: nil) }
            throw error
        }
        lastViews.withLock { $0.finish(started, answer: answer) }
        count(answer == nil ? .oneStatementMissed : .oneStatement)
        return answer
    }

    private func count(_ path: PostgresBatchPath) {
        batchPaths.withLock { $0[path, default: 0] += 1 }
        batchPathCounters[path]?.increment()
    }

    /// One-statement batches sent on the lane and not yet answered.
    package var oneStatementBatchesInFlight: Int { lastViews.withLock { $0.sent } }

    /// How many of this store's reservation batches took each path.
    package var reservationBatchPaths: [PostgresBatchPath: Int] { batchPaths.withLock { $0 } }

    // MARK: Orders

    public func order(_ id: OrderID) async throws -> Order? {
        try await rows(
            "SELECT \(unescaped: PostgresRows.orderColumns) FROM orders WHERE id = \(id.description)"
        ).first.map(PostgresRows.order)
    }

    public func orders(ids: [OrderID]) async throws -> [OrderID: Order] {
        guard !ids.isEmpty else { return [:] }
        let found = try await rows(
            "SELECT \(unescaped: PostgresRows.orderColumns) FROM orders WHERE id = ANY(\(ids.map(\.description)))"
        ).map(PostgresRows.order)
        return Dictionary(found.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
    }

    public func order(saleID: SaleID, idempotencyKey: String) async throws -> Order? {
        try await rows(
            """
            SELECT \(unescaped: PostgresRows.orderColumns) FROM orders
            WHERE sale_id = \(saleID.description) AND idempotency_key = \(idempotencyKey)
            """
        ).first.map(PostgresRows.order)
    }

    public func transition(_ id: OrderID, by event: Order.Event, at now: Date) async throws -> TransitionResult {
        guard let result = try await transitions([TransitionRequest(orderID: id, event: event)], at: now)[0] else {
            throw OrderError.orderNotFound
        }
        return result
    }

    public func transitions(_ requests: [TransitionRequest], at now: Date) async throws -> [TransitionResult?] {
        try await transaction { connection in
            var orders = try await PostgresOrders.lock(Set(requests.map(\.orderID)), on: connection, logger: self.logger)
            var results: [TransitionResult?] = []
            for request in requests {
                guard let order = orders[request.orderID] else {
                    results.append(nil)
                    continue
                }
                let result = try await PostgresOrders.apply(request.event, to: order, on: connection, at: now, logger: self.logger)
                orders[request.orderID] = result.order
                results.append(result)
            }
            return results
        }
    }

    public func cancelAttempt(saleID: SaleID, idempotencyKey: String, buyer: String?, at now: Date) async throws
        -> AttemptCancellationResult
    {
        try await transaction { connection in
            // The sale's row lock orders this against a batch placing the same key on another node;
            // the new version tells a node deciding on its last view of the sale that it is out of
            // date (a cancelled attempt is not in that view; see `PostgresReservationLedger`).
            guard
                try await connection.query(
                    "UPDATE sales SET version = version + 1 WHERE id = \(saleID.description) RETURNING 1",
                    logger: self.logger
                ).collect().count == 1
            else { throw OrderError.saleNotFound }
            let placed = try await connection.query(
                """
                SELECT id FROM orders WHERE sale_id = \(saleID.description) AND idempotency_key = \(idempotencyKey)
                """, logger: self.logger
            ).values(String.self).first.flatMap(OrderID.init)
            if let placed {
                let order = try await PostgresOrders.lock([placed], on: connection, logger: self.logger)[placed]
                guard let order else { throw OrderError.orderNotFound }
                if buyer == nil || buyer == order.buyer {
                    return .order(
                        try await PostgresOrders.apply(.cancel, to: order, on: connection, at: now, logger: self.logger))
                }
            }
            let at = try await connection.query(
                """
                INSERT INTO cancelled_attempts (sale_id, idempotency_key, buyer, cancelled_at)
                VALUES (\(saleID.description), \(idempotencyKey), \(buyer ?? StoreRules.anyBuyer), \(PostgresRows.millis(now)))
                ON CONFLICT (sale_id, idempotency_key, buyer) DO UPDATE SET cancelled_at = cancelled_attempts.cancelled_at
                RETURNING cancelled_at
                """, logger: self.logger
            ).values(Int64.self).first
            return .recorded(at: PostgresRows.date(at ?? PostgresRows.millis(now)))
        }
    }

    public func flagOrder(_ id: OrderID, _ flag: OrderFlag) async throws {
        let updated = try await rows(
            """
            UPDATE orders SET flag = \(flag.reason.rawValue), flagged_at = \(PostgresRows.millis(flag.flaggedAt))
            WHERE id = \(id.description) RETURNING 1
            """)
        guard updated.count == 1 else { throw OrderError.orderNotFound }
    }

    public func orders(matching filter: OrderFilter, after: OrderID?, limit: Int) async throws -> [Order] {
        let saleID = filter.saleID?.description
        let status = filter.status?.rawValue
        let query: PostgresQuery = """
            SELECT \(unescaped: PostgresRows.orderColumns) FROM orders
            WHERE id > \(after?.description ?? "") AND (\(saleID)::text IS NULL OR sale_id = \(saleID))
                AND (\(status)::text IS NULL OR status = \(status)) AND (NOT \(filter.flaggedOnly) OR flag IS NOT NULL)
            ORDER BY id LIMIT \(limit)
            """
        return try await rows(query).map(PostgresRows.order)
    }

    public func events(of orderID: OrderID) async throws -> [OrderEvent] {
        try await rows(
            """
            SELECT \(unescaped: PostgresRows.eventColumns) FROM order_events WHERE order_id = \(orderID.description)
            ORDER BY sequence
            """
        ).map(PostgresRows.event)
    }

    public func changes() -> AsyncStream<StoreChange> { listener.subscribe() }

    public var isShared: Bool { true }

    // MARK: Life

    public var connectionWaiters: Int { waiting.load(ordering: .relaxed) }

    public func ping() async throws {
        _ = try await rows("SELECT 1")
    }

    /// Each part gets `closeLimit`: one that does not close in time (a library's close waiting for
    /// an answer a restarted or frozen server will not send) is logged and left behind, so that a
    /// node told to stop does stop — what it acknowledged is committed already.
    public func close() async throws {
        await closing("the connection listening for changes", doing: { self.listener.currentStep }) { await self.listener.stop() }
        await closing("the one-statement lane's connection") { await self.lane.close() }
        let running = pool.withLock { $0.running }
        running.cancel()
        await closing("the connection pool") { _ = await running.value }
    }

    static let closeLimit: Duration = .seconds(5)

    private func closing(
        _ part: String, doing: () -> String? = { nil }, _ close: @escaping @Sendable () async -> Void
    ) async {
        if (try? await boundedWait(atMost: Self.closeLimit, close)) == nil {
            var metadata: Logger.Metadata = [:]
            if let doing = doing() { metadata["doing"] = "\(doing)" }
            logger.error("\(part) did not close within \(Self.closeLimit); the store closes without it", metadata: metadata)
        }
    }
}
