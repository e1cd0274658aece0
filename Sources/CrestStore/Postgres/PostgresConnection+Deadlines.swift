import CrestConcurrency
import CrestCore
import Logging
import NIOCore
import PostgresNIO

/// What postgres-nio 1.33 leaves unbounded, bounded: the start-up exchange of a new connection,
/// and a statement's answer outside a store call (the listener's probe).
extension PostgresConnection {
    /// A new connection, or `UnavailableError` once `limit` has passed: the TCP connect has a
    /// timeout of its own (`options.connectTimeout`), the start-up exchange after it (TLS,
    /// authentication, the server's parameters) none in postgres-nio 1.33 — a server that accepts
    /// connections and says nothing (frozen, its machine stalled) would hold the caller as long.
    /// A connection that completes after `limit` is closed.
    static func connect(
        configuration: PostgresConnection.Configuration, within limit: Duration, logger: Logger
    ) async throws -> PostgresConnection {
        let opened: PostgresConnection?
        do {
            opened = try await boundedWait(
                atMost: limit, { try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger) },
                whenLate: { connection in try? await connection.close() })
        } catch {
            throw UnavailableError(reason: "PostgreSQL connection failed: \(error)")
        }
        guard let opened else { throw UnavailableError(reason: "PostgreSQL did not complete a connection within \(limit)") }
        return opened
    }

    /// Runs `query` and waits for its end at most `timeout`: past it the connection is closed and
    /// this throws `UnavailableError`.
    ///
    /// The wait is bounded here, not by the close alone: postgres-nio 1.33 never answers a
    /// statement written to a connection that is already closed (its handler is gone and the
    /// statement's promise is dropped), so a query sent just after the server cut the connection
    /// would wait for ever — and with it whoever awaits the query. Such a query's task is left
    /// behind. The statement is written before this first waits (`Task.immediate` runs the query
    /// on the caller's thread up to its first suspension, which comes after the write): written
    /// from a task of its own, it went out late on a busy machine, after a close meant to end it
    /// (the store's close then waited for the deadline).
    func answer(_ query: PostgresQuery, within timeout: Duration, logger: Logger) async throws {
        guard !isClosed else { throw UnavailableError(reason: "PostgreSQL connection closed") }
        let answered = eventLoop.makePromise(of: Void.self)
        let deadline = eventLoop.scheduleTask(in: .init(timeout)) { [self] in
            answered.fail(UnavailableError(reason: "PostgreSQL did not answer within \(timeout)"))
            close().whenComplete { _ in }
        }
        Task.immediate {
            do {
                try await self.query(query, logger: logger)
                answered.succeed()
            } catch {
                answered.fail(error)
            }
        }
        defer { deadline.cancel() }
        try await answered.futureResult.get()
    }
}
