import CrestCore
import Logging
import Metrics
import NIOCore
import PostgresNIO
import Synchronization

/// One connection a PostgreSQL node keeps, outside the pool, for its one-statement batches.
///
/// postgres-nio sends a connection's statements in the order queued, each the moment the one
/// before is answered, from the connection's event loop: a batch queued behind another waits for
/// the server only, not for a trip through the node's tasks. That order is what lets a batch be
/// decided on the one before it (`PostgresLastViews`): its statement's snapshot is taken once the
/// one before has committed or failed.
///
/// A statement still waiting when the connection closes fails with `UnavailableError` (postgres-nio
/// 1.33 was seen to leave a statement in flight waiting forever when the server cut its
/// connection); so does every statement waiting when one is not answered within `answerTimeout`
/// (the connection is then closed: a server that does not answer holds no batch for longer). The
/// next call opens a new connection.
final class PostgresLane: Sendable {
    private struct Open {
        var connection: PostgresConnection
        var waiting: [Int: EventLoopPromise<[PostgresRow]>] = [:]
        var next = 0
    }

    private let configuration: PostgresConnection.Configuration
    private let answerTimeout: Duration
    /// Counts each statement failed for want of an answer.
    private let timedOut: Counter
    private let logger: Logger
    private let state = Mutex<Open?>(nil)

    init(
        configuration: PostgresConnection.Configuration, connectTimeout: Duration, answerTimeout: Duration,
        timedOut: Counter, logger: Logger
    ) {
        var configuration = configuration
        configuration.options.connectTimeout = .init(connectTimeout)
        // The one statement it runs is prepared and planned once (`PreparedWrite`).
        configuration.options.additionalStartupParameters.append(("plan_cache_mode", "force_generic_plan"))
        self.configuration = configuration
        self.answerTimeout = answerTimeout
        self.timedOut = timedOut
        self.logger = logger
    }

    /// The lane's connection, opened if it is not.
    func connection() async throws -> PostgresConnection {
        if let open = state.withLock({ $0 }), !open.connection.isClosed { return open.connection }
        let new = try await PostgresConnection.connect(configuration: configuration, within: answerTimeout, logger: logger)
        let (use, extra) = state.withLock { open -> (PostgresConnection, PostgresConnection?) in
            if let current = open, !current.connection.isClosed { return (current.connection, new) }
            open = Open(connection: new)
            return (new, nil)
        }
        if let extra {
            try? await extra.close()
        } else {
            new.closeFuture.whenComplete { [self] _ in failAll(on: new) }
        }
        return use
    }

    /// Queues `write` on `connection` (the lane's) as the statement prepared there (on its first
    /// use); its rows, or `UnavailableError` once the connection closes first.
    ///
    /// postgres-nio runs a prepared statement only from a task: `Task.immediate` runs it on the
    /// caller's thread up to its first suspension, which comes after the statement is written to
    /// the connection — so the statements go out in the order of the calls (made under the
    /// caller's lock), as unnamed ones do. Should one ever go out of turn, what it checks (the
    /// batch before it wrote its orders, the sale's version) makes it write nothing: a miss, not a
    /// wrong answer.
    func send(_ write: PostgresReservationLedger.PreparedWrite, on connection: PostgresConnection)
        -> EventLoopFuture<[PostgresRow]>
    {
        let promise = connection.eventLoop.makePromise(of: [PostgresRow].self)
        let id = state.withLock { open -> Int? in
            guard var current = open, current.connection === connection, !connection.isClosed else { return nil }
            let id = current.next
            current.next += 1
            current.waiting[id] = promise
            open = current
            return id
        }
        guard let id else {
            promise.fail(UnavailableError(reason: "PostgreSQL connection closed"))
            return promise.futureResult
        }
        let timeout = connection.eventLoop.scheduleTask(in: .init(answerTimeout)) { [self] in notAnswered(on: connection) }
        Task.immediate { [self] in
            let result: Result<[PostgresRow], any Error>
            do {
                var rows: [PostgresRow] = []
                for try await row in try await connection.execute(write, logger: logger) { rows.append(row) }
                result = .success(rows)
            } catch {
                result = .failure(error)
            }
            timeout.cancel()
            let waiting = state.withLock { open -> EventLoopPromise<[PostgresRow]>? in
                guard open?.connection === connection else { return nil }
                return open?.waiting.removeValue(forKey: id)
            }
            waiting?.completeWith(result)
        }
        return promise.futureResult
    }

    func close() async {
        let open = state.withLock { open -> Open? in
            defer { open = nil }
            return open
        }
        guard let open else { return }
        try? await open.connection.close()
        fail(open.waiting.values)
    }

    private func failAll(on connection: PostgresConnection) {
        fail(takeAll(on: connection))
    }

    /// A statement on `connection` was not answered in time: every statement waiting there fails,
    /// and the connection is closed.
    private func notAnswered(on connection: PostgresConnection) {
        let waiting = takeAll(on: connection)
        guard !waiting.isEmpty else { return }
        timedOut.increment(by: waiting.count)
        logger.warning(
            "PostgreSQL did not answer a one-statement batch in time; the lane's connection is closed",
            metadata: ["timeout": "\(answerTimeout)", "waiting": "\(waiting.count)"])
        fail(waiting, reason: "PostgreSQL did not answer within \(answerTimeout)")
        connection.close().whenComplete { _ in }
    }

    /// The statements waiting on `connection`, if it is the lane's: the lane then has no connection.
    private func takeAll(on connection: PostgresConnection) -> [EventLoopPromise<[PostgresRow]>] {
        state.withLock { open in
            guard let current = open, current.connection === connection else { return [] }
            open = nil
            return Array(current.waiting.values)
        }
    }

    private func fail(
        _ promises: some Sequence<EventLoopPromise<[PostgresRow]>>, reason: String = "PostgreSQL connection closed"
    ) {
        for promise in promises { promise.fail(UnavailableError(reason: reason)) }
    }
}
