import CrestCore
import Foundation

/// What recording a payment observation did.
public struct PaymentRecord: Sendable {
    /// The order after the observation.
    public var order: Order
    /// Nothing changed: the observation's event id had been recorded before, or it repeats what the
    /// order already shows. (Such an event's id is not kept: a payment's status only climbs, so
    /// the same event can never change anything later either — and a webhook that repeats the
    /// provider's answer, as its `created` event does, writes nothing.)
    public var duplicate: Bool
    /// The order's change (paid, refunded), if the observation caused one.
    public var transition: TransitionResult?
    /// A refund job was enqueued: the payment succeeded after the order was cancelled or expired.
    public var refundEnqueued: Bool
    /// The observation gave the order its payment: the order had none before (the first of the
    /// provider's answer and its webhooks to arrive).
    public var attachedPayment: Bool

    public init(
        order: Order, duplicate: Bool, transition: TransitionResult?, refundEnqueued: Bool, attachedPayment: Bool = false
    ) {
        self.order = order
        self.duplicate = duplicate
        self.transition = transition
        self.refundEnqueued = refundEnqueued
        self.attachedPayment = attachedPayment
    }
}

/// Why one payment observation was not recorded.
public enum PaymentRecordFailure: Error, Sendable, Hashable {
    case orderNotFound
    case mismatch(PaymentMismatchError)
    case paymentTaken(PaymentTakenError)

    /// The error callers of a single observation see.
    public var error: any Error {
        switch self {
        case .orderNotFound: OrderError.orderNotFound
        case .mismatch(let error): error
        case .paymentTaken(let error): error
        }
    }
}

extension Store {
    /// Records one observation (see `recordPayments(_:at:)`); throws its failure.
    public func recordPayment(_ observation: PaymentObservation, at now: Date) async throws -> PaymentRecord {
        switch try await recordPayments([observation], at: now)[0] {
        case .success(let record): return record
        case .failure(let failure): throw failure.error
        }
    }
}

/// An observation names a payment other than the one the order already has.
public struct PaymentMismatchError: DomainError, Hashable {
    public var orderID: OrderID
    public var known: String
    public var observed: String

    public init(orderID: OrderID, known: String, observed: String) {
        self.orderID = orderID
        self.known = known
        self.observed = observed
    }
}

/// The provider named, for an order, a payment id that another order already holds: the provider
/// is wrong (a restarted sandbox reusing ids, a bug), and nothing of it is recorded. Each payment
/// id belongs to one order (`orders_by_payment`), so money is never matched to two orders.
public struct PaymentTakenError: DomainError, Hashable {
    public var orderID: OrderID
    public var paymentID: String
    /// The order that holds the payment id.
    public var heldBy: OrderID

    public init(orderID: OrderID, paymentID: String, heldBy: OrderID) {
        self.orderID = orderID
        self.paymentID = paymentID
        self.heldBy = heldBy
    }
}
