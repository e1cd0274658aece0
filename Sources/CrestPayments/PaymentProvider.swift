import CrestCore
import Foundation

/// A payment provider as Crest uses it. Every call that changes something carries an idempotency
/// key, so repeating it (after a timeout, a lost answer) never pays or refunds twice.
package protocol PaymentProvider: Sendable {
    /// Creates (or, for a known key, returns) the payment of an order.
    func createPayment(_ request: PaymentRequest) async throws -> ProviderPayment

    /// The payment as the provider knows it now.
    func payment(id: String) async throws -> ProviderPayment

    /// Refunds a succeeded payment in full (or returns the refund already made with this key).
    func refund(paymentID: String, idempotencyKey: String) async throws -> ProviderPayment

    /// The provider's statement for the payments created in `from..<to`: a line per charge (with
    /// the payment's status now) and per refund.
    func statement(from: Date, to: Date) async throws -> [StatementRow]
}

package struct PaymentRequest: Sendable, Hashable {
    package var orderID: OrderID
    package var amount: Money
    package var idempotencyKey: String

    package init(orderID: OrderID, amount: Money, idempotencyKey: String) {
        self.orderID = orderID
        self.amount = amount
        self.idempotencyKey = idempotencyKey
    }
}

/// A payment at the provider; `reference` is Crest's order id.
package struct ProviderPayment: Sendable, Hashable {
    package var id: String
    package var reference: String
    package var amount: Money
    package var status: PaymentStatus
    package var payURL: String?

    package init(id: String, reference: String, amount: Money, status: PaymentStatus, payURL: String?) {
        self.id = id
        self.reference = reference
        self.amount = amount
        self.status = status
        self.payURL = payURL
    }

    /// The observation of this payment for the order it references, if the reference is an order id.
    package func observation(eventID: String? = nil) -> PaymentObservation? {
        OrderID(reference).map {
            PaymentObservation(
                orderID: $0, payment: OrderPayment(id: id, status: status, payURL: payURL), eventID: eventID)
        }
    }
}

/// One line of the provider's statement: a charge, or the refund of one.
package struct StatementRow: Sendable, Hashable {
    package enum Kind: String, Sendable, Hashable {
        case charge, refund
    }

    package var lineID: String
    package var kind: Kind
    package var paymentID: String
    /// The merchant's reference: Crest's order id.
    package var reference: String
    /// The currency as the provider states it: a code Crest may not know (an ISO code or not).
    package var amount: Int64
    package var currency: String
    package var fee: Int64
    package var status: PaymentStatus
    package var createdAt: Date
    package var settledAt: Date

    package init(
        lineID: String, kind: Kind, paymentID: String, reference: String, amount: Int64, currency: String, fee: Int64,
        status: PaymentStatus, createdAt: Date, settledAt: Date
    ) {
        self.lineID = lineID
        self.kind = kind
        self.paymentID = paymentID
        self.reference = reference
        self.amount = amount
        self.currency = currency
        self.fee = fee
        self.status = status
        self.createdAt = createdAt
        self.settledAt = settledAt
    }
}

/// Why a provider call failed.
package enum ProviderError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The provider cannot be reached or did not answer in time, or Crest is holding calls back
    /// (circuit open, too many in flight): try again later.
    case unavailable(Unavailable)
    /// The provider refused the request (a 4xx): repeating it will not help.
    case rejected(status: Int, detail: String)
    case notFound

    package var description: String {
        switch self {
        case .unavailable(let reason): "payment provider unavailable: \(reason)"
        case .rejected(let status, let detail): "payment provider refused the request (\(status)): \(detail)"
        case .notFound: "payment provider does not know this payment"
        }
    }
}

/// Why the provider is unavailable, told apart for logs and metrics: a refused connection is not a
/// timeout, and neither is an error answer.
package struct Unavailable: Sendable, Hashable, CustomStringConvertible {
    package enum Cause: String, Sendable, Hashable, CaseIterable {
        /// No answer within the call's deadline.
        case timeout
        /// No connection: refused, reset, unresolvable host, TLS failure.
        case connection = "connection_error"
        /// An answer of 5xx or 429.
        case status = "http_error"
        /// Not tried: the circuit breaker is open.
        case circuitOpen = "rejected_open"
        /// Not tried: too many calls in flight (the bulkhead).
        case bulkheadFull = "rejected_full"
    }

    package var cause: Cause
    package var detail: String

    package init(_ cause: Cause, _ detail: String) {
        self.cause = cause
        self.detail = detail
    }

    package var description: String { detail }
}
