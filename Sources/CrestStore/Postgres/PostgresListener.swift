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
///
/// A connection can be lost without a word: a NAT's or load balancer's idle timeout, or a network
/// partition, drops its packets and closes nothing, and a listener only reads — it would wait for
/// ever while other nodes' announcements go nowhere (a sold-out gate that another node's expiry
/// reopened stays shut). So every `probeInterval` the listening connection is asked `SELECT 1`;
/// not answered within `answerTimeout`, it is closed and the listener connects again. The probe's
/// traffic also keeps such idle timers from firing. The connection is named `crest-listener` in
/// `pg_stat_activity`.
final class PostgresListener: Sendable {
    static let applicationName = "crest-listener"
    private let subscribers = Mutex<[AsyncStream<StoreChange>.Continuation]>([])
    private let configuration: PostgresConnection.Configuration
    private let probeInterval: Duration
    private let answerTimeout: Duration
    private let logger: Logger
    private let task = Mutex<Task<Void, Never>?>(nil)
    private let connection = Mutex<PostgresConnection?>(nil)
    private let step = Mutex("not started")

    /// What the listener is doing now ("connecting", "listening", …): said when it does not stop.
    var currentStep: String { step.withLock { $0 } }

    private func now(_ doing: String) { step.withLock { $0 = doing } }

    init(configuration: PostgresConnection.Configuration, probeInterval: Duration, answerTimeout: Duration, logger: Logger) {
        var configuration = configuration
        configuration.options.additionalStartupParameters.append(("application_name", Self.applicationName))
        self.configuration = configuration
        self.probeInterval = probeInterval
        self.answerTimeout = answerTimeout
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
        now("stopped")
        for subscriber in subscribers.withLock({ $0 }) { subscriber.finish() }
    }

    private func listen(_ listening: AsyncStream<Void>.Continuation) async {
        var backoff = Duration.milliseconds(100)
        var first = true
        while !Task.isCancelled {
            do {
                now("connecting")
                let opened = try await PostgresConnection.connect(configuration: configuration, within: answerTimeout, logger: logger)
                connection.withLock { $0 = opened }
                if Task.isCancelled {
                    try? await opened.close()
                    return
                }
                // The `LISTEN` itself is answered within `answerTimeout` too, or the connection closed.
                let listenUnanswered = opened.eventLoop.scheduleTask(in: .init(answerTimeout)) {
                    opened.close().whenComplete { _ in }
                }
                do {
                    now("asking to LISTEN")
                    try await opened.listen(on: PostgresNotices.channel) { notifications in
                        now("listening")
                        listenUnanswered.cancel()
                        listening.finish()
                        if !first { tell(.resynchronize) }
                        first = false
                        backoff = .milliseconds(100)
                        // Whichever ends first — the notifications with the connection, or the probe
                        // that closed it — ends the other.
                        try await withThrowingTaskGroup(of: Void.self) { group in
                            group.addTask {
                                for try await notification in notifications {
                                    if let change = PostgresNotices.parse(notification.payload) { self.tell(change) }
                                }
                            }
                            group.addTask { try await self.probe(opened) }
                            defer { group.cancelAll() }
                            try await group.next()
                        }
                    }
                } catch {
                    listenUnanswered.cancel()
                    now("closing its connection after: \(error)")
                    try? await opened.close()
                    throw error
                }
                now("closing its connection")
                try? await opened.close()
            } catch {
                if Task.isCancelled { return }
                logger.warning("listening for other nodes' changes failed; retrying", metadata: ["error": "\(error)"])
            }
            now("waiting \(backoff) to connect again")
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(5))
        }
    }

    /// Every `probeInterval`, `SELECT 1` on the listening connection; not answered within
    /// `answerTimeout`, the connection is closed and this throws.
    private func probe(_ connection: PostgresConnection) async throws {
        while true {
            try await Task.sleep(for: probeInterval)
            now("probing its connection")
            defer { now("listening") }
            do {
                try await connection.answer("SELECT 1", within: answerTimeout, logger: logger)
            } catch let error as UnavailableError {
                logger.warning(
                    "the connection listening for other nodes' changes did not answer in time; connecting again",
                    metadata: ["timeout": "\(answerTimeout)"])
                throw error
            }
        }
    }
}
