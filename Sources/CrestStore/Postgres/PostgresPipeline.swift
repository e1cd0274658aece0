import Logging
import NIOCore
import PostgresNIO

/// Statements sent on one connection without waiting for each other's answers.
///
/// postgres-nio queues statements sent while one is running and sends the next the moment the
/// server has answered the one before, on the connection's event loop. So a transaction's
/// statements that do not depend on each other's results cost the server's time once, instead of
/// a trip through the calling task per statement — under load, that trip (waiting for a thread
/// of the cooperative pool) was most of a reservation batch's time.
///
/// The statements still run one after another, in the order sent, so a lock taken by one holds
/// for the ones after it. In a transaction, a failed statement aborts it: the statements after
/// it fail too, and a `COMMIT` sent behind them rolls back.
struct PostgresPipeline {
    private let connection: PostgresConnection
    private let logger: Logger
    private var sent: [EventLoopFuture<PostgresQueryResult>] = []

    init(on connection: PostgresConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    /// Sends `query` behind those already sent; returns its place among the results.
    @discardableResult
    mutating func send(_ query: PostgresQuery) -> Int {
        let answer: EventLoopFuture<PostgresQueryResult> = connection.query(query, logger: logger)
        sent.append(answer)
        return sent.count - 1
    }

    /// Every statement's rows, in the order sent; or the first statement's failure, once every
    /// statement has been answered. Completes on the connection's event loop.
    func answers() -> EventLoopFuture<[[PostgresRow]]> {
        EventLoopFuture.whenAllComplete(sent, on: connection.eventLoop).flatMapThrowing { answers in
            try answers.map { try $0.get().rows }
        }
    }
}
