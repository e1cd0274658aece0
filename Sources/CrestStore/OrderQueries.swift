import CrestCore
import Foundation

/// See `Store.webhookDelivery(_:)`.
public struct WebhookDeliveryContext: Sendable {
    public var endpoint: WebhookEndpoint?
    public var event: OrderEvent
    public var order: Order
    public var previousDelivered: Bool

    public init(endpoint: WebhookEndpoint?, event: OrderEvent, order: Order, previousDelivered: Bool) {
        self.endpoint = endpoint
        self.event = event
        self.order = order
        self.previousDelivered = previousDelivered
    }
}

/// What cancelling an attempt by its idempotency key did.
public enum AttemptCancellationResult: Sendable {
    /// The attempt had placed this order; the cancel was applied to it.
    case order(TransitionResult)
    /// The attempt had placed no order; from `at` on, a reservation with its key is refused.
    case recorded(at: Date)
}

/// Which orders an operator listing shows.
public struct OrderFilter: Sendable, Hashable {
    public var saleID: SaleID?
    public var status: Order.Status?
    /// `true`: only flagged orders.
    public var flaggedOnly: Bool

    public init(saleID: SaleID? = nil, status: Order.Status? = nil, flaggedOnly: Bool = false) {
        self.saleID = saleID
        self.status = status
        self.flaggedOnly = flaggedOnly
    }
}
