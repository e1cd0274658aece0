import Foundation

/// Why an order was not placed or not changed. Each case is one kind of problem for the client.
public enum OrderError: Error, Sendable, Hashable {
    /// No stock left for the quantity asked.
    case soldOut
    /// The buyer's live orders in this sale already hold `limit` units (or this one would pass it).
    case buyerLimitReached(limit: Int)
    /// More units asked than a buyer may ever hold in this sale.
    case quantityAboveLimit(limit: Int)
    /// The sale opens at `startsAt`.
    case saleNotOpen(startsAt: Date)
    /// The sale ended.
    case saleClosed
    case saleNotFound
    case orderNotFound
    /// The idempotency key was used before with another buyer or quantity.
    case idempotencyKeyReused
    /// The first request with this idempotency key has not been answered yet.
    case requestInProgress
    /// The attempt with this idempotency key was cancelled before it placed an order.
    case attemptCancelled
    /// The order is no longer awaiting payment.
    case notPending(current: Order.Status)
    /// The order's payment window closed at `at`: it is about to expire, and cannot be paid.
    case paymentWindowClosed(at: Date)
}

/// The engine cannot serve now (store unreachable, shutting down); the request may be retried.
public struct UnavailableError: Error, Sendable, Hashable {
    public var reason: String
    public var retryAfterSeconds: Int

    public init(reason: String, retryAfterSeconds: Int = 1) {
        self.reason = reason
        self.retryAfterSeconds = retryAfterSeconds
    }
}
