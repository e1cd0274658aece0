import AsyncHTTPClient
import CrestCore
import CrestPayments
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// Sends the simulator's webhook events, signed, to the configured URL, as a `Service`.
///
/// Each delivery is retried with backoff until the receiver answers 2xx (at most `maxAttempts`
/// times). At most `maxInFlight` requests are out at once, as a provider sends to one endpoint
/// over a few connections; the other events wait their turn in order. (Unbounded, a burst of
/// events queued thousands of requests in the HTTP client's pool, where they timed out and were
/// sent again — the receiver saw fewer webhooks for more work.) Faults decide, per event, from
/// the seeded generator: drop it, send it twice, hold it back so that later events overtake it,
/// delay every event.
package final class WebhookDispatcher: Service, Sendable {
    package struct Target: Sendable {
        package var url: String
        package var secret: String

        package init(url: String, secret: String) {
            self.url = url
            self.secret = secret
        }
    }

    private let stream: AsyncStream<ProviderAPI.Event>
    private let continuation: AsyncStream<ProviderAPI.Event>.Continuation
    private let target: Mutex<Target?>
    private let http: HTTPClient
    private let logger: Logger
    private let maxAttempts: Int
    private let permits: DeliveryPermits
    /// The statuses whose events are sent (the endpoint's subscription); nil: every one.
    private let subscribed: Set<PaymentStatus>?
    private let counts = Mutex((emitted: 0, delivered: 0, failedAttempts: 0, givenUp: 0))
    /// Set by the simulator that owns this dispatcher: its faults and random source.
    private let source = Mutex<PaymentSimulator?>(nil)
    private let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }()

    /// Requests in flight at once by default: `HTTPClient`'s default number of connections to one host.
    package static let defaultMaxInFlight = 8

    /// Requests in flight at once on a client of the dispatcher's own (`crest psp-sim`, `crest demo`):
    /// a provider sends to one endpoint over many connections. With 8, a buyer's `processing` and
    /// `succeeded` webhooks queued behind a sale's burst of `created` ones — they reached Crest 11–13 s
    /// late at the median in the demo, 36 s on a slow day; with 64, within 0.5 s (RESULTS.md).
    package static let ownClientMaxInFlight = 64

    /// A dispatcher sending `maxInFlight` webhooks at once on an HTTP client of its own, one
    /// connection each; the caller shuts the client down once the dispatcher has stopped.
    package static func withOwnClient(
        target: Target?, logger: Logger, maxInFlight: Int = ownClientMaxInFlight, subscribed: Set<PaymentStatus>? = nil
    ) -> (dispatcher: WebhookDispatcher, http: HTTPClient) {
        let http = HTTPPaymentProvider.makeClient(connections: maxInFlight, traced: false)
        let dispatcher = WebhookDispatcher(
            target: target, http: http, logger: logger, maxInFlight: maxInFlight, subscribed: subscribed)
        return (dispatcher, http)
    }

    package init(
        target: Target?, http: HTTPClient, logger: Logger, maxAttempts: Int = 8,
        maxInFlight: Int = WebhookDispatcher.defaultMaxInFlight, subscribed: Set<PaymentStatus>? = nil
    ) {
        (stream, continuation) = AsyncStream.makeStream(of: ProviderAPI.Event.self)
        self.target = Mutex(target)
        self.http = http
        self.logger = logger
        self.maxAttempts = maxAttempts
        self.permits = DeliveryPermits(limit: maxInFlight)
        self.subscribed = subscribed
    }

    /// The statuses an endpoint's subscription names: `all` (nil: every type), or event types
    /// separated by commas (`payment_intent.processing,payment_intent.succeeded`).
    package static func subscription(_ text: String) throws(SubscriptionError) -> Set<PaymentStatus>? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed == "all" { return nil }
        var statuses: Set<PaymentStatus> = []
        for name in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
            let type = name.trimmingCharacters(in: .whitespaces)
            guard let status = ProviderAPI.Event.status(of: type) else { throw SubscriptionError(type: type) }
            statuses.insert(status)
        }
        return statuses
    }

    package struct SubscriptionError: Error, CustomStringConvertible {
        package var type: String

        package var description: String {
            let known = PaymentStatus.allCases.map { ProviderAPI.Event.type(for: $0) }.joined(separator: ", ")
            return "unknown webhook event type \"\(type)\": the types are \(known), or all"
        }
    }

    /// Where events go from now on (e.g. once the receiver listens and its port is known).
    package func setTarget(_ target: Target?) { self.target.withLock { $0 = target } }

    /// Events emitted, events delivered (2xx), delivery attempts that failed, and events given up
    /// (every attempt failed, or nowhere to send them). Emitted = delivered + given up once quiet.
    package var statistics: (emitted: Int, delivered: Int, failedAttempts: Int, givenUp: Int) { counts.withLock { $0 } }

    func attach(_ simulator: PaymentSimulator) { source.withLock { $0 = simulator } }

    /// Sends the intent's change as an event, unless the endpoint is not subscribed to its type.
    func emit(_ intent: ProviderAPI.Intent, at now: Date) {
        guard subscribed?.contains(intent.status) ?? true else { return }
        // Unique across runs, like payment ids: Crest drops an event id it has seen as a duplicate.
        let event = ProviderAPI.Event(
            id: PaymentSimulator.newID(prefix: "evt_"), type: ProviderAPI.Event.type(for: intent.status),
            created: Int64(now.timeIntervalSince1970), data: intent)
        counts.withLock { $0.emitted += 1 }
        continuation.yield(event)
    }

    package func run() async throws {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for await event in stream {
                    let (simulator, faults) = source.withLock { ($0, $0?.faults ?? SimulatorFaults()) }
                    let random = simulator?.random ?? SeededRandom(seed: 1)
                    if random.chance(faults.webhookDropRate) {
                        logger.info("webhook dropped (fault)", metadata: ["event": "\(event.id)"])
                        counts.withLock { $0.givenUp += 1 }
                        continue
                    }
                    let copies = random.chance(faults.webhookDuplicateRate) ? 2 : 1
                    for _ in 0..<copies {
                        var delay = faults.webhookDelayMs
                        if random.chance(faults.webhookReorderRate) { delay += random.upTo(faults.webhookReorderMs) }
                        group.addTask { await self.deliver(event, after: .milliseconds(delay)) }
                    }
                }
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.continuation.finish()
        }
    }

    private func deliver(_ event: ProviderAPI.Event, after delay: Duration) async {
        if delay > .zero { try? await Task.sleep(for: delay) }
        guard let body = try? encoder.encode(event) else { return }
        for attempt in 1...maxAttempts {
            guard !Task.isCancelled else { return }
            guard let target = target.withLock({ $0 }) else {
                logger.warning("no webhook URL configured; event not sent", metadata: ["event": "\(event.id)"])
                counts.withLock { $0.givenUp += 1 }
                return
            }
            var request = HTTPClientRequest(url: target.url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(
                name: ProviderAPI.signatureHeader, value: WebhookSignature.sign(body, secret: target.secret, at: Date()))
            request.body = .bytes(ByteBuffer(bytes: body))
            guard await permits.acquire() else { return }
            let status = await send(request, event: event)
            permits.release()
            if let status, (200..<300).contains(status) {
                counts.withLock { $0.delivered += 1 }
                return
            }
            counts.withLock { $0.failedAttempts += 1 }
            try? await Task.sleep(for: .milliseconds(min(5_000, 100 << (attempt - 1))))
        }
        counts.withLock { $0.givenUp += 1 }
        logger.warning("webhook given up", metadata: ["event": "\(event.id)"])
    }

    /// One attempt: the receiver's status, or nil when it did not answer.
    private func send(_ request: HTTPClientRequest, event: ProviderAPI.Event) async -> UInt? {
        do {
            let response = try await http.execute(request, timeout: .seconds(10))
            _ = try await response.body.collect(upTo: 1 << 20)
            if !(200..<300).contains(response.status.code) {
                logger.info("webhook refused", metadata: ["event": "\(event.id)", "status": "\(response.status.code)"])
            }
            return response.status.code
        } catch {
            logger.info("webhook not delivered", metadata: ["event": "\(event.id)", "error": "\(error)"])
            return nil
        }
    }
}
