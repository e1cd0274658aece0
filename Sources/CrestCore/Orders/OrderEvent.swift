import Foundation

/// One change of an order, written in the same transaction as the change (the transactional
/// outbox). Each order's events are numbered 1, 2, … without gaps.
public struct OrderEvent: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable, Codable, CaseIterable, Comparable {
        case created = "order.created"
        case paid = "order.paid"
        case cancelled = "order.cancelled"
        case expired = "order.expired"
        case refunded = "order.refunded"

        public static func < (lhs: Kind, rhs: Kind) -> Bool { lhs.rawValue < rhs.rawValue }

        /// The event written when an order takes `event`'s arrow.
        public init(_ event: Order.Event) {
            switch event {
            case .pay: self = .paid
            case .cancel: self = .cancelled
            case .expire: self = .expired
            case .refund: self = .refunded
            }
        }
    }

    public var id: EventID
    public var orderID: OrderID
    public var saleID: SaleID
    public var sequence: Int
    public var kind: Kind
    public var occurredAt: Date

    public init(id: EventID, orderID: OrderID, saleID: SaleID, sequence: Int, kind: Kind, occurredAt: Date) {
        self.id = id
        self.orderID = orderID
        self.saleID = saleID
        self.sequence = sequence
        self.kind = kind
        self.occurredAt = occurredAt
    }
}

/// A mark on an order that an operator must look at.
public struct OrderFlag: Sendable, Hashable {
    public enum Reason: String, Sendable, Hashable, Codable, CaseIterable {
        /// A payment succeeded for an order that was already cancelled or expired: the money must go back.
        case confirmAfterCancel = "confirm_after_cancel"
        /// Confirming a paid order (reserved → sold) failed on every attempt.
        case confirmFailed = "confirm_failed"
        /// The provider answered the order's payment creation with a payment id another order
        /// holds: nothing was recorded, the order has no payment and expires unless an operator acts.
        case paymentIDTaken = "payment_id_taken"
    }

    public var reason: Reason
    public var flaggedAt: Date

    public init(reason: Reason, flaggedAt: Date) {
        self.reason = reason
        self.flaggedAt = flaggedAt
    }
}

/// The answer to cancelling an attempt by its idempotency key: the order it placed, now cancelled,
/// or — when it never placed one — a record that refuses it if it arrives later.
public struct AttemptCancellation: Sendable, Hashable {
    public var saleID: SaleID
    public var idempotencyKey: String
    public var cancelledAt: Date
    /// The attempt's order, when it had placed one.
    public var order: Order?

    public init(saleID: SaleID, idempotencyKey: String, cancelledAt: Date, order: Order?) {
        self.saleID = saleID
        self.idempotencyKey = idempotencyKey
        self.cancelledAt = cancelledAt
        self.order = order
    }
}

/// An order event with its place in the event feed. Positions are 1, 2, 3, … without gaps, in the
/// order events became visible to the feed (after their transaction committed), and each event
/// has one for good: a consumer that resumes after the last position it kept misses nothing and
/// receives nothing twice. An order's events take positions in their sequence order.
public struct FeedEvent: Sendable, Hashable {
    public var position: Int64
    public var event: OrderEvent

    public init(position: Int64, event: OrderEvent) {
        self.position = position
        self.event = event
    }
}

/// One read of the event feed: events after a position, and the feed's head (the highest
/// position given so far, 0 while none is), which no consumer's cursor can pass.
public struct EventFeedPage: Sendable, Hashable {
    public var events: [FeedEvent]
    public var head: Int64

    public init(events: [FeedEvent], head: Int64) {
        self.events = events
        self.head = head
    }
}
