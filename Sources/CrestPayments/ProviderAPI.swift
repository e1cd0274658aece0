import CrestCore
import Foundation

/// The JSON of the provider API that `crest psp-sim` serves and `HTTPPaymentProvider` calls,
/// shaped like a real provider's: payment intents, signed webhook events, statements.
public enum ProviderAPI {
    /// Header of the provider's webhooks.
    public static let signatureHeader = "Provider-Signature"

    /// `POST /v1/payment_intents` (with `Idempotency-Key`).
    public struct CreateIntent: Codable, Sendable {
        public var amount: Int64
        public var currency: String
        /// The merchant's reference: Crest's order id.
        public var reference: String

        public init(amount: Int64, currency: String, reference: String) {
            self.amount = amount
            self.currency = currency
            self.reference = reference
        }
    }

    /// A payment intent.
    public struct Intent: Codable, Sendable, Hashable {
        public var id: String
        public var reference: String
        public var amount: Int64
        public var currency: String
        public var status: PaymentStatus
        public var payUrl: String?
        /// Unix seconds.
        public var created: Int64
        public var updated: Int64

        public init(
            id: String, reference: String, amount: Int64, currency: String, status: PaymentStatus, payUrl: String?,
            created: Int64, updated: Int64
        ) {
            self.id = id
            self.reference = reference
            self.amount = amount
            self.currency = currency
            self.status = status
            self.payUrl = payUrl
            self.created = created
            self.updated = updated
        }

        /// The intent as a `ProviderPayment`; `nil` when its currency is not an ISO code.
        public var payment: ProviderPayment? {
            Currency(currency).map {
                ProviderPayment(
                    id: id, reference: reference, amount: Money(amount: amount, currency: $0), status: status,
                    payURL: payUrl)
            }
        }
    }

    /// A webhook event: `type` is `payment_intent.<status>` and `data` the intent after the change.
    public struct Event: Codable, Sendable, Hashable {
        public var id: String
        public var type: String
        /// Unix seconds.
        public var created: Int64
        public var data: Intent

        public init(id: String, type: String, created: Int64, data: Intent) {
            self.id = id
            self.type = type
            self.created = created
            self.data = data
        }

        /// The event type announcing `status`.
        public static func type(for status: PaymentStatus) -> String { "payment_intent.\(status.rawValue)" }

        /// The status an event type announces; `nil` for types Crest does not know.
        public static func status(of type: String) -> PaymentStatus? {
            guard type.hasPrefix("payment_intent.") else { return nil }
            return PaymentStatus(rawValue: String(type.dropFirst("payment_intent.".count)))
        }
    }

    /// `POST /v1/payment_intents/{id}/simulate`: the buyer pays, or the payment fails.
    public struct Simulate: Codable, Sendable {
        public var outcome: PaymentStatus

        public init(outcome: PaymentStatus) { self.outcome = outcome }
    }

    /// The columns of `GET /v1/statements?from=…&to=…` (CSV, unix seconds).
    public static let statementHeader = "payment_id,reference,amount,currency,status,settled_at"
}
