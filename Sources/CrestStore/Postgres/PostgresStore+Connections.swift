import CrestCore
import Foundation
import Logging
import Metrics
import PostgresNIO
import Synchronization

/// How the PostgreSQL store gets a connection and runs a transaction: every call bounded in time
/// (a lease that does not come, a statement a cut connection never answers), connection failures
/// told apart from statement errors, deadlocks retried.
extension PostgresStore {
    /// Runs one statement on a pooled connection and returns all its rows.
    func rows(_ query: PostgresQuery, answerTimeout: Duration? = nil) async throws -> [PostgresRow] {
        try await withConnection(answerTimeout: answerTimeout) { connection in
            try await connection.query(query, logger: self.logger).collect()
        }
    }

    /// How long a read of a whole table (the audit's, a reconciliation window's orders) may wait for
    /// its answer, when that is longer than `answerTimeout`: on a large database such a read takes
    /// seconds by itself.
    static let bulkReadTimeout = Duration.seconds(600)

    /// The time a bulk read is given: `bulkReadTimeout`, or the calls' own when it is longer.
    var bulkReadTimeout: Duration { max(answerTimeout, Self.bulkReadTimeout) }

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
    /// - A server that does not answer (frozen, its disk stalled, a lock held elsewhere, a
    ///   connection cut without a word) is given `answerTimeout` (the store's, unless the call
    ///   says otherwise) from the lease; then the connection is closed — a transaction not yet
    ///   committed is rolled back; one whose `COMMIT` was sent may still commit, as when a
    ///   connection dies — and the caller gets `UnavailableError`.
    /// - A connection failure surfacing as `PSQLError` becomes `UnavailableError` too.
    func withConnection<T: Sendable>(
        answerTimeout: Duration? = nil, _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        let leaseTimeout = leaseTimeout
        let answerTimeout = answerTimeout ?? self.answerTimeout
        let client = pool.withLock { $0.client }
        return try await withCheckedThrowingContinuation { continuation in
            let call = GuardedCall(continuation)
            let work = Task {
                // Counted as waiting until it holds a connection or gives up.
                let stillWaiting = Atomic<Bool>(true)
                self.waiting.add(1, ordering: .relaxed)
                func stopWaiting() {
                    if stillWaiting.exchange(false, ordering: .relaxed) { self.waiting.subtract(1, ordering: .relaxed) }
                }
                defer { stopWaiting() }
                do {
                    let value = try await client.withConnection { connection in
                        stopWaiting()
                        guard call.lease(connection) else { throw CancellationError() }
                        // Before the connection goes back to the pool: from then on the watchdog
                        // must not close it (another call may hold it).
                        defer { call.release() }
                        return try await body(connection)
                    }
                    call.end(.success(value))
                } catch let error as PSQLError where Self.isConnectionFailure(error) {
                    call.end(.failure(UnavailableError(reason: "PostgreSQL connection failed: \(error.code)")))
                } catch {
                    call.end(.failure(error))
                }
            }
            let watchdog = Task {
                // Until the lease: woken at its deadline, or each half second to see whether it came.
                let leaseDeadline = ContinuousClock.now + leaseTimeout
                var lease = call.leased()
                while lease == nil, ContinuousClock.now < leaseDeadline {
                    try await Task.sleep(until: min(leaseDeadline, .now + .milliseconds(500)))
                    lease = call.leased()
                }
                guard let (connection, leasedAt) = lease ?? call.expireOrLeased() else {
                    work.cancel()
                    self.timeoutCounters.lease.increment()
                    call.finish(.failure(UnavailableError(reason: "no PostgreSQL connection within \(leaseTimeout)")))
                    return
                }
                let deadline = leasedAt + answerTimeout
                while !connection.isClosed {
                    let left = deadline - .now
                    guard left > .zero else { break }
                    try await Task.sleep(for: min(left, .milliseconds(500)))
                }
                if connection.isClosed {
                    try await Task.sleep(for: .seconds(1))
                    if call.finish(.failure(UnavailableError(reason: "PostgreSQL closed the connection under a statement"))) {
                        self.replacePool(lost: client)
                    }
                    return
                }
                // The connection is closed before the caller hears: the work's own failure, which
                // the close causes, does not answer it.
                guard call.takeOver() else { return }
                self.timeoutCounters.answer.increment()
                self.logger.warning(
                    "PostgreSQL did not answer a store call in time; its connection is closed",
                    metadata: ["timeout": "\(answerTimeout)"])
                try? await connection.close()
                call.finish(.failure(UnavailableError(reason: "PostgreSQL did not answer within \(answerTimeout)")))
                // This task is cancelled now that the call is answered: the lease is watched apart.
                Task {
                    try? await Task.sleep(for: .seconds(1))
                    if !call.hasReleased { self.replacePool(lost: client) }
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
        begin: PostgresQuery = "BEGIN", answerTimeout: Duration? = nil,
        _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        try await retryingTransaction(answerTimeout: answerTimeout) { connection in
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
        answerTimeout: Duration? = nil, _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try await withConnection(answerTimeout: answerTimeout) { connection in
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

/// A postgres-nio client and the task that runs it.
struct Pool: Sendable {
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
        case waiting
        case leased(PostgresConnection, at: ContinuousClock.Instant)
        case expired, finished
    }

    private struct State {
        var phase = Phase.waiting
        var continuation: CheckedContinuation<T, any Error>?
        var onFinish: (@Sendable () -> Void)?
        /// Whether the call's own work is done with its connection (handed back to the pool).
        var released = false
        /// Whether the watchdog answers the call, whatever the work returns.
        var takenOver = false
    }

    private let state: Mutex<State>

    init(_ continuation: CheckedContinuation<T, any Error>) {
        state = Mutex(State(continuation: continuation))
    }

    /// Whether `connection` may run the call (false once the lease deadline passed).
    func lease(_ connection: PostgresConnection) -> Bool {
        state.withLock { state in
            guard case .waiting = state.phase else { return false }
            state.phase = .leased(connection, at: .now)
            return true
        }
    }

    /// The leased connection and when it was leased, if it was.
    func leased() -> (PostgresConnection, ContinuousClock.Instant)? {
        state.withLock { state in
            guard case .leased(let connection, let at) = state.phase else { return nil }
            return (connection, at)
        }
    }

    /// At the lease deadline: the leased connection and when it was leased, or nil when there is
    /// none (and none may come).
    func expireOrLeased() -> (PostgresConnection, ContinuousClock.Instant)? {
        state.withLock { state in
            switch state.phase {
            case .leased(let connection, let at): return (connection, at)
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

    /// The call's own work returned `result`: answers the caller with it unless it was answered
    /// or the watchdog took the answer over.
    func end(_ result: Result<T, any Error>) {
        let answers = state.withLock { !$0.takenOver }
        if answers { finish(result) }
    }

    /// The call's own work is done with its connection.
    func release() {
        state.withLock { $0.released = true }
    }

    /// The watchdog is to answer the call itself, and may close the connection; false when the
    /// call was answered already or its work handed the connection back.
    func takeOver() -> Bool {
        state.withLock { state in
            guard state.continuation != nil, !state.takenOver, !state.released else { return false }
            state.takenOver = true
            return true
        }
    }

    /// Whether the call's own work handed its connection back.
    var hasReleased: Bool { state.withLock { $0.released } }

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
