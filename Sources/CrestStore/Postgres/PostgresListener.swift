import CrestCore
import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// What a transaction announces to every node, on the `crest` channel: delivered with the commit,
/// dropped with a rollback.
enum PostgresNotices {
    static let channel = "crest"

    /// Jobs were enqueued; the earliest is due at `at`.
    static func jobsDue(at: Date, on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query(
            "SELECT pg_notify(\(channel), \("jobs:\(PostgresRows.millis(at))"))", logger: logger)
    }

    /// Units of the sale went back to `available` (a cancel or an expiry).
    static func stockReleasedQuery(_ saleID: SaleID) -> PostgresQuery {
        "SELECT pg_notify(\(channel), \("stock:\(saleID.description)"))"
    }

    static func parse(_ payload: String) -> StoreChange? {
        if payload.hasPrefix("jobs:"), let millis = Int64(payload.dropFirst(5)) {
            return .jobsDue(at: PostgresRows.date(millis))
        }
        if payload.hasPrefix("stock:"), let sale = SaleID(String(payload.dropFirst(6))) {
            return .stockReleased(sale)
        }
        return nil
    }
}

/// One connection of its own that `LISTEN`s on the `crest` channel and passes what it hears to
/// every stream `subscribe()` handed out; after a lost connection it connects again (with backoff)
/// and reports `.resynchronize`, since notifications sent meanwhile are gone.
final class PostgresListener: Sendable {
    private let subscribers = Mutex<[AsyncStream<StoreChange>.Continuation]>([])
    private let configuration: PostgresConnection.Configuration
    private let logger: Logger
    private let task = Mutex<Task<Void, Never>?>(nil)
    private let connection = Mutex<PostgresConnection?>(nil)

    init(configuration: PostgresConnection.Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// A new stream of what is heard from now on; it ends when the listener stops.
    func subscribe() -> AsyncStream<StoreChange> {
        let (stream, continuation) = AsyncStream.makeStream(of: StoreChange.self, bufferingPolicy: .bufferingNewest(1024))
        subscribers.withLock { $0.append(continuation) }
        return stream
    }

    private func tell(_ change: StoreChange) {
        for subscriber in subscribers.withLock({ $0 }) { subscriber.yield(change) }
    }

    /// Starts listening; returns once the first `LISTEN` holds (so nothing committed after it is
    /// missed), or after 5 s without (the listener keeps trying in the background).
    func start() async {
        let (listening, signal) = AsyncStream.makeStream(of: Void.self)
        let started = task.withLock { task -> Bool in
            guard task == nil else { return false }
            task = Task { await self.listen(signal) }
            return true
        }
        guard started else { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { for await _ in listening { return } }
            group.addTask { try? await Task.sleep(for: .seconds(5)) }
            await group.next()
            group.cancelAll()
        }
    }

    func stop() async {
        let running = task.withLock { $0 }
        running?.cancel()
        try? await connection.withLock { $0 }?.close()
        await running?.value
        for subscriber in subscribers.withLock({ $0 }) { subscriber.finish() }
    }

    private func listen(_ listening: AsyncStream<Void>.Continuation) async {
        var backoff = Duration.milliseconds(100)
        var first = true
        while !Task.isCancelled {
            do {
                let opened = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
                connection.withLock { $0 = opened }
                if Task.isCancelled {
                    try? await opened.close()
                    return
                }
                do {
                    try await opened.listen(on: PostgresNotices.channel) { notifications in
                        listening.finish()
                        if !first { tell(.resynchronize) }
                        first = false
                        backoff = .milliseconds(100)
                        for try await notification in notifications {
                            if let change = PostgresNotices.parse(notification.payload) { tell(change) }
                        }
                    }
                } catch {
                    try? await opened.close()
                    throw error
                }
                try? await opened.close()
            } catch {
                if Task.isCancelled { return }
                logger.warning("listening for other nodes' changes failed; retrying", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(5))
        }
    }
}
