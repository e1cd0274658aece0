import AsyncHTTPClient
import CrestCore
import CrestPayments
import CrestStore
import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1

/// Delivers one order event to one merchant endpoint per job: signed like the provider's webhooks
/// (`Crest-Signature: t=…,v1=…`), retried with the job backoff until the endpoint answers 2xx, in
/// sequence order per order and endpoint (a delivery waits until the previous event got through).
struct WebhookDeliverer: Sendable {
    static let signatureHeader = "Crest-Signature"
    /// How long a delivery that waits for an earlier event of its order snoozes before it looks
    /// again: a second at first, then a tenth of how long it has waited, up to a minute. An endpoint
    /// that is down for hours holds a waiting delivery for every later event of every order, and
    /// each look is a job claim and a write; a fixed second made that a storm of them.
    static func orderingRecheck(waited: TimeInterval) -> Duration {
        .seconds(min(60, max(1, waited / 10)))
    }

    /// The deliveries' client, shared by the process's engines. It drops an idle connection
    /// before common servers do (`OutboundHTTP.idleTimeout`; `HTTPClient.shared` keeps one for 10
    /// minutes), and follows no redirect: a redirected `POST` may arrive as a `GET` without its
    /// body, so a 3xx is a refusal like any other status outside 2xx, retried with the job.
    static let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)

    static var clientConfiguration: HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow)
        configuration.connectionPool.idleTimeout = OutboundHTTP.idleTimeout
        return configuration
    }

    let store: any Store
    let http: HTTPClient
    let logger: Logger
    let clock: @Sendable () -> Date

    func register(in handlers: inout JobHandlers) {
        handlers.register(WebhookJobs.deliver, timeout: .seconds(30)) { _, delivery in try await deliver(delivery) }
    }

    func deliver(_ delivery: WebhookJobs.Delivery) async throws -> JobResult {
        guard let context = try await store.webhookDelivery(delivery) else {
            throw JobDiscardError("event \(delivery.sequence) of order \(delivery.orderId) does not exist")
        }
        guard let endpoint = context.endpoint else { return .completed }  // deleted: nothing to send
        guard context.previousDelivered else {
            return .snooze(Self.orderingRecheck(waited: clock().timeIntervalSince(context.event.occurredAt)))
        }
        let body = try MerchantEvent.encoder.encode(MerchantEvent(context.event, order: context.order))
        var request = HTTPClientRequest(url: endpoint.url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Crest-Event-Id", value: context.event.id.description)
        request.headers.add(name: Self.signatureHeader, value: WebhookSignature.sign(body, secret: endpoint.secret, at: clock()))
        request.body = .bytes(ByteBuffer(bytes: body))
        // A delivery whose connection was lost before an answer (a kept-alive connection the
        // endpoint closed as the request went out) is sent once more at once rather than after the
        // job's backoff: the receiver tells a second copy apart by `Crest-Event-Id`.
        let response = try await OutboundHTTP.retryingLostConnection {
            let response = try await http.execute(request, timeout: .seconds(10))
            _ = try await response.body.collect(upTo: 64 << 10)
            return response
        }
        guard (200..<300).contains(response.status.code) else {
            throw DeliveryRefused(status: Int(response.status.code))
        }
        let now = clock()
        try await store.markDelivered(delivery, at: now)
        Timer(
            label: "crest_merchant_webhook_lag_seconds", dimensions: [("endpoint", endpoint.id.description)],
            preferredDisplayUnit: .seconds
        ).record(duration: .seconds(max(0, now.timeIntervalSince(context.event.occurredAt))))
        return .completed
    }

    struct DeliveryRefused: Error, CustomStringConvertible {
        var status: Int
        var description: String { "the endpoint answered \(status)" }
    }
}

/// The body of a merchant webhook: the event, and the order as the event left it.
struct MerchantEvent: Encodable {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }()
    static let timestamps = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    struct Snapshot: Encodable {
        var id: OrderID
        var saleId: SaleID
        var buyer: String
        var quantity: Int
        var amount: Money
        var status: Order.Status
        var createdAt: String
        var expiresAt: String
        var paymentId: String?
    }

    var id: EventID
    var type: OrderEvent.Kind
    var sequence: Int
    var occurredAt: String
    var order: Snapshot

    init(_ event: OrderEvent, order: Order) {
        id = event.id
        type = event.kind
        sequence = event.sequence
        occurredAt = event.occurredAt.formatted(Self.timestamps)
        let status: Order.Status =
            switch event.kind {
            case .created: .pendingPayment
            case .paid: .paid
            case .cancelled: .cancelled
            case .expired: .expired
            case .refunded: .refunded
            }
        self.order = Snapshot(
            id: order.id, saleId: order.saleID, buyer: order.buyer, quantity: order.quantity, amount: order.amount,
            status: status, createdAt: order.createdAt.formatted(Self.timestamps),
            expiresAt: order.expiresAt.formatted(Self.timestamps), paymentId: order.payment?.id)
    }
}
