import CrestCore
import Foundation
import Logging
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
    private let pool: Mutex<Pool>
    private let configuration: PostgresClient.Configuration
    let logger: Logger
    let listener: PostgresListener
    /// How long a store call waits for a pooled connection before it answers "unavailable".
    let leaseTimeout: Duration

    /// Connects to `url` (`postgres://user:password@host:port/database`, `?sslmode=disable|prefer|require`),
    /// applies pending migrations (one node at a time) and returns the store.
    public static func connect(
        url: String, logger: Logger, maxConnections: Int = 20, leaseTimeout: Duration = .seconds(2)
    ) async throws -> PostgresStore {
        let parsed = try PostgresURL(url)
        var configuration = parsed.client
        configuration.options.maximumConnections = maxConnections
        configuration.options.connectTimeout = .seconds(5)
        try await PostgresMigrations.migrate(parsed.connection, logger: logger)
        let store = PostgresStore(
            configuration: configuration, listening: parsed.connection, leaseTimeout: leaseTimeout, logger: logger)
        await store.listener.start()
        return store
    }

    private init(
        configuration: PostgresClient.Configuration, listening: PostgresConnection.Configuration,
        leaseTimeout: Duration, logger: Logger
    ) {
        self.logger = logger
        self.leaseTimeout = leaseTimeout
        self.configuration = configuration
        pool = Mutex(Pool(configuration: configuration, logger: logger))
        listener = PostgresListener(configuration: listening, logger: logger)
    }

    // MARK: Sales

    public func createSale(_ sale: Sale) async throws {
        _ = try await rows(
            """
            INSERT INTO sales (\(unescaped: PostgresRows.saleColumns))
            VALUES (\(sale.id.description), \(sale.sku), \(sale.title), \(sale.price.amount), \(sale.price.currency.code),
                \(sale.perBuyerLimit), \(PostgresRows.millis(sale.startsAt)), \(sale.endsAt.map(PostgresRows.millis)),
                \(sale.paymentWindowSeconds), \(PostgresRows.millis(sale.createdAt)), \(sale.stock.total),
                \(sale.stock.available), \(sale.stock.reserved), \(sale.stock.sold), 0)
            """)
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
            """).map { try PostgresRows.sale($0).sale }
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

    public func reserve(_ batch: [Reservation]) async throws -> ReservationBatchResult {
        try await retryingTransaction { connection in
            try await PostgresReservationLedger.run(batch, on: connection, logger: self.logger).get()
        }
    }

    // MARK: Orders

    public func order(_ id: OrderID) async throws -> Order? {
        try await rows(
            "SELECT \(unescaped: PostgresRows.orderColumns) FROM orders WHERE id = \(id.description)"
        ).first.map(PostgresRows.order)
    }

    public func order(saleID: SaleID, idempotencyKey: String) async throws -> Order? {
        try await rows(
            """
            SELECT \(unescaped: PostgresRows.orderColumns) FROM orders
            WHERE sale_id = \(saleID.description) AND idempotency_key = \(idempotencyKey)
            """).first.map(PostgresRows.order)
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

    public func cancelAttempt(saleID: SaleID, idempotencyKey: String, at now: Date) async throws
        -> AttemptCancellationResult
    {
        try await transaction { connection in
            // The sale's row lock orders this against a batch placing the same key on another node.
            guard
                try await connection.query(
                    "SELECT 1 FROM sales WHERE id = \(saleID.description) FOR UPDATE", logger: self.logger
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
                return .order(try await PostgresOrders.apply(.cancel, to: order, on: connection, at: now, logger: self.logger))
            }
            let at = try await connection.query(
                """
                INSERT INTO cancelled_attempts (sale_id, idempotency_key, cancelled_at)
                VALUES (\(saleID.description), \(idempotencyKey), \(PostgresRows.millis(now)))
                ON CONFLICT (sale_id, idempotency_key) DO UPDATE SET cancelled_at = cancelled_attempts.cancelled_at
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
            """).map(PostgresRows.event)
    }

    public func changes() -> AsyncStream<StoreChange> { listener.subscribe() }

    public var isShared: Bool { true }

    // MARK: Life

    public func ping() async throws {
        _ = try await rows("SELECT 1")
    }

    public func close() async throws {
        await listener.stop()
        let running = pool.withLock { $0.running }
        running.cancel()
        _ = await running.value
    }

    // MARK: Connections and transactions

    /// Runs one statement on a pooled connection and returns all its rows.
    func rows(_ query: PostgresQuery) async throws -> [PostgresRow] {
        try await withConnection { connection in try await connection.query(query, logger: self.logger).collect() }
    }

    /// Leases a connection for `body`, and makes sure the caller gets an answer when PostgreSQL
    /// does not give one.
    ///
    /// - The pool waits for a connection as long as PostgreSQL refuses them (its own circuit
    ///   breaker trips only after a minute), so the wait is bounded here: a call that gets no
    ///   connection within `leaseTimeout` fails with `UnavailableError`, which callers answer 503.
    /// - A statement in flight when the server cuts its connection (a fast shutdown) was seen to
    ///   wait forever in postgres-nio 1.33. Once a leased connection is closed, `body` has a
    ///   moment to fail by itself; then the caller gets `UnavailableError` and `body` is left to
    ///   its fate (its lease with it).
    /// - A connection failure surfacing as `PSQLError` becomes `UnavailableError` too.
    func withConnection<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let leaseTimeout = leaseTimeout
        let client = pool.withLock { $0.client }
        return try await withCheckedThrowingContinuation { continuation in
            let call = GuardedCall(continuation)
            let work = Task {
                do {
                    let value = try await client.withConnection { connection in
                        guard call.lease(connection) else { throw CancellationError() }
                        return try await body(connection)
                    }
                    call.finish(.success(value))
                } catch let error as PSQLError where Self.isConnectionFailure(error) {
                    call.finish(.failure(UnavailableError(reason: "PostgreSQL connection failed: \(error.code)")))
                } catch {
                    call.finish(.failure(error))
                }
            }
            let watchdog = Task {
                try await Task.sleep(for: leaseTimeout)
                guard let connection = call.expireOrLeased() else {
                    work.cancel()
                    call.finish(.failure(UnavailableError(reason: "no PostgreSQL connection within \(leaseTimeout)")))
                    return
                }
                while !connection.isClosed { try await Task.sleep(for: .milliseconds(500)) }
                try await Task.sleep(for: .seconds(1))
                if call.finish(.failure(UnavailableError(reason: "PostgreSQL closed the connection under a statement"))) {
                    self.replacePool(lost: client)
                }
            }
            call.whenFinished { watchdog.cancel() }
        }
    }

    /// A lease that never comes back shrinks the pool for good; after one is lost, the store
    /// takes a fresh pool (once per lost pool) and leaves the old one to wind down.
    private func replacePool(lost: PostgresClient) {
        let old = pool.withLock { pool -> Task<Void, Never>? in
            guard pool.client === lost else { return nil }
            let old = pool.running
            pool = Pool(configuration: configuration, logger: logger)
            return old
        }
        guard let old else { return }
        logger.error(
            "a statement did not end when its connection closed; its lease is lost, so the connection pool is replaced")
        old.cancel()
    }

    /// Runs `body` in a transaction on one connection: committed when it returns, rolled back when
    /// it throws (and its own error rethrown). A deadlock or serialization failure — two nodes
    /// locking in an order PostgreSQL had to break — runs the whole transaction again, up to 3 times.
    func transaction<T: Sendable>(
        begin: PostgresQuery = "BEGIN", _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        try await retryingTransaction { connection in
            try await connection.query(begin, logger: self.logger)
            let result = try await body(connection)
            try await connection.query("COMMIT", logger: self.logger)
            return result
        }
    }

    /// Runs `body`, which begins and commits a transaction itself, on one connection: rolled back
    /// when `body` throws (and its own error rethrown); run again, up to 3 times in all, after a
    /// deadlock or serialization failure.
    func retryingTransaction<T: Sendable>(
        _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try await withConnection { connection in
                    do {
                        return try await body(connection)
                    } catch {
                        // A connection that failed is gone with its transaction (the server rolls it
                        // back); a statement sent on it now would wait forever (postgres-nio 1.33).
                        if let failure = error as? PSQLError, Self.isConnectionFailure(failure) { throw error }
                        _ = try? await connection.query("ROLLBACK", logger: self.logger)
                        throw error
                    }
                }
            } catch let error as PSQLError where attempt < 3 && Self.isRetryable(error) {
                logger.info("transaction retried", metadata: ["attempt": "\(attempt)", "error": "\(String(reflecting: error))"])
                attempt += 1
            }
        }
    }

    /// Whether `error` says the connection (not the statement) failed: refused, closed, timed out.
    static func isConnectionFailure(_ error: PSQLError) -> Bool {
        switch error.code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed:
            return true
        case .server:
            // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 08xxx connection exceptions.
            guard let state = error.serverInfo?[.sqlState] else { return false }
            return state.hasPrefix("57P") || state.hasPrefix("08")
        default:
            return false
        }
    }

    static func isRetryable(_ error: PSQLError) -> Bool {
        guard let state = error.serverInfo?[.sqlState] else { return false }
        return state == "40P01" || state == "40001"
    }
}

/// `postgres://user:password@host:port/database?sslmode=…`, parsed.
struct PostgresURL: Sendable {
    struct Invalid: Error, CustomStringConvertible {
        var description: String
    }

    enum TLSMode: String, Sendable {
        case disable, prefer, require
    }

    var host: String
    var port: Int
    var user: String
    var password: String?
    var database: String?
    var tls: TLSMode

    init(_ url: String) throws {
        guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme)
        else { throw Invalid(description: "not a postgres:// URL: \(url)") }
        guard let host = components.host, !host.isEmpty else { throw Invalid(description: "no host in \(url)") }
        self.host = host
        port = components.port ?? 5432
        user = components.user.flatMap { $0.removingPercentEncoding } ?? "postgres"
        password = components.password.flatMap { $0.removingPercentEncoding }
        let database = String(components.path.drop(while: { $0 == "/" }))
        self.database = database.isEmpty ? nil : database
        let mode = components.queryItems?.first { $0.name == "sslmode" }?.value ?? "prefer"
        switch mode {
        case "disable": tls = .disable
        case "prefer", "allow": tls = .prefer
        case "require", "verify-ca", "verify-full": tls = .require
        default: throw Invalid(description: "sslmode \(mode) is not one of disable, prefer, require")
        }
    }

    var client: PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS =
            switch self.tls {
            case .disable: .disable
            case .prefer: .prefer(.makeClientConfiguration())
            case .require: .require(.makeClientConfiguration())
            }
        return PostgresClient.Configuration(
            host: host, port: port, username: user, password: password, database: database, tls: tls)
    }

    var connection: PostgresConnection.Configuration {
        let tls: PostgresConnection.Configuration.TLS
        switch self.tls {
        case .disable: tls = .disable
        case .prefer: tls = (try? .prefer(.init(configuration: .makeClientConfiguration()))) ?? .disable
        case .require: tls = (try? .require(.init(configuration: .makeClientConfiguration()))) ?? .disable
        }
        return PostgresConnection.Configuration(
            host: host, port: port, username: user, password: password, database: database, tls: tls)
    }
}

/// A postgres-nio client and the task that runs it.
private struct Pool: Sendable {
    let client: PostgresClient
    let running: Task<Void, Never>

    init(configuration: PostgresClient.Configuration, logger: Logger) {
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.client = client
        running = Task { await client.run() }
    }
}

/// One store call racing its watchdog: the first `finish` answers the caller, later ones are
/// ignored; a lease after the deadline is refused.
private final class GuardedCall<T: Sendable>: Sendable {
    private enum Phase {
        case waiting, leased(PostgresConnection), expired, finished
    }

    private struct State {
        var phase = Phase.waiting
        var continuation: CheckedContinuation<T, any Error>?
        var onFinish: (@Sendable () -> Void)?
    }

    private let state: Mutex<State>

    init(_ continuation: CheckedContinuation<T, any Error>) {
        state = Mutex(State(continuation: continuation))
    }

    /// Whether `connection` may run the call (false once the lease deadline passed).
    func lease(_ connection: PostgresConnection) -> Bool {
        state.withLock { state in
            guard case .waiting = state.phase else { return false }
            state.phase = .leased(connection)
            return true
        }
    }

    /// At the lease deadline: the leased connection, or nil when there is none (and none may come).
    func expireOrLeased() -> PostgresConnection? {
        state.withLock { state in
            switch state.phase {
            case .leased(let connection): return connection
            case .waiting:
                state.phase = .expired
                return nil
            case .expired, .finished: return nil
            }
        }
    }

    /// Answers the caller with `result` unless it was answered already; returns whether it did.
    @discardableResult
    func finish(_ result: Result<T, any Error>) -> Bool {
        let (continuation, onFinish) = state.withLock { state -> (CheckedContinuation<T, any Error>?, (@Sendable () -> Void)?) in
            defer {
                state.continuation = nil
                state.onFinish = nil
            }
            state.phase = .finished
            return (state.continuation, state.onFinish)
        }
        guard let continuation else { return false }
        continuation.resume(with: result)
        onFinish?()
        return true
    }

    /// Runs `action` when the call is answered (at once if it was).
    func whenFinished(_ action: @escaping @Sendable () -> Void) {
        let now = state.withLock { state -> Bool in
            guard state.continuation != nil else { return true }
            state.onFinish = action
            return false
        }
        if now { action() }
    }
}
