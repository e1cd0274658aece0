import CrestCore
import CrestEngine
import CrestPayments
import CrestStore
import Foundation
import HTTPTypes
import Hummingbird

/// A provider webhook that Crest cannot take: no secret to check it with.
struct WebhooksNotConfiguredError: Error {}

/// A provider event of a type Crest does not know.
struct UnknownEventTypeError: Error {
    var type: String
}

/// The provider's side of Crest: its signed webhooks, and (for operators) the state of the guard
/// around calls to it.
struct PaymentRoutes {
    let engine: Engine
    let webhookSecret: String?
    let refusals: WebhookRefusals

    func add(to router: Router<CrestRequestContext>, admin: AdminAuthMiddleware<CrestRequestContext>) {
        router.post("v1/webhooks/provider", use: webhook)
        router.group("v1/provider")
            .add(middleware: admin)
            .get(use: status)
    }

    /// Verifies the signature (constant time, 300 s tolerance), then applies the event: `200` for
    /// an applied or duplicate event, so the provider stops resending it. A refusal is counted and
    /// logged (throttled) besides being answered.
    @Sendable func webhook(_ request: Request, context: CrestRequestContext) async throws -> WebhookReceiptBody {
        do {
            return try await receive(request, context: context)
        } catch {
            refusals.refused(error)
            throw error
        }
    }

    private func receive(_ request: Request, context: CrestRequestContext) async throws -> WebhookReceiptBody {
        guard let secret = webhookSecret else { throw WebhooksNotConfiguredError() }
        var request = request
        let body = Data(try await request.collectBody(upTo: context.maxUploadSize).readableBytesView)
        try WebhookSignature.verify(
            request.headers[HTTPField.Name(ProviderAPI.signatureHeader)!], body: body, secret: secret, now: Date())
        let event: ProviderAPI.Event
        do {
            event = try context.requestDecoder.decode(ProviderAPI.Event.self, from: body)
        } catch {
            throw BodyDecodingError(detail: "the body is not a provider event: \(error)")
        }
        guard let status = ProviderAPI.Event.status(of: event.type) else { throw UnknownEventTypeError(type: event.type) }
        var intent = event.data
        intent.status = status
        guard let observation = intent.payment?.observation(eventID: event.id) else {
            throw ValidationError(field: "data", message: "must reference an order id and carry an ISO currency")
        }
        engine.recordProviderWebhookLag(seconds: Date().timeIntervalSince1970 - Double(event.created))
        let record = try await engine.recordPayment(observation)
        return WebhookReceiptBody(
            eventId: event.id, duplicate: record.duplicate, orderStatus: record.order.status,
            paymentStatus: record.order.payment?.status)
    }

    @Sendable func status(_ request: Request, context: CrestRequestContext) async throws -> ProviderStatusBody {
        ProviderStatusBody(configured: engine.hasPaymentProvider, status: engine.providerStatus)
    }
}

struct WebhookReceiptBody: Codable, ResponseEncodable {
    var eventId: String
    var duplicate: Bool
    var orderStatus: Order.Status
    var paymentStatus: PaymentStatus?
}

struct ProviderStatusBody: Codable, ResponseEncodable {
    struct Breaker: Codable {
        var state: String
        var callsInWindow: Int
        var failureRate: Double
        var slowCallRate: Double
        var rejected: Int
        var opened: Int
    }

    var configured: Bool
    var breaker: Breaker?
    var inFlight: Int?
    var maxInFlight: Int?
    var bulkheadRejected: Int?

    init(configured: Bool, status: GuardedProvider.Status?) {
        self.configured = configured
        if let status {
            let breaker = status.breaker
            self.breaker = Breaker(
                state: breaker.state.rawValue, callsInWindow: breaker.callsInWindow, failureRate: breaker.failureRate,
                slowCallRate: breaker.slowCallRate, rejected: breaker.rejected, opened: breaker.opened)
            inFlight = status.inFlight
            maxInFlight = status.maxInFlight
            bulkheadRejected = status.bulkheadRejected
        }
    }
}
