import CrestCore
import Foundation

/// The JSON of the provider API that `crest psp-sim` serves and `HTTPPaymentProvider` calls,
/// shaped like a real provider's: payment intents, signed webhook events, statements.
package enum ProviderAPI {
    /// Header of the provider's webhooks.
    package static let signatureHeader = "Provider-Signature"

    /// `POST /v1/payment_intents` (with `Idempotency-Key`).
    package struct CreateIntent: Codable, Sendable {
        package var amount: Int64
        package var currency: String
        /// The merchant's reference: Crest's order id.
        package var reference: String

        package init(amount: Int64, currency: String, reference: String) {
            self.amount = amount
            self.currency = currency
            self.reference = reference
        }
    }

    /// A payment intent.
    package struct Intent: Codable, Sendable, Hashable {
        package var id: String
        package var reference: String
        package var amount: Int64
        package var currency: String
        package var status: PaymentStatus
        package var payUrl: String?
        /// Unix seconds.
        package var created: Int64
        package var updated: Int64

        package init(
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
        package var payment: ProviderPayment? {
            Currency(currency).map {
                ProviderPayment(
                    id: id, reference: reference, amount: Money(amount: amount, currency: $0), status: status,
                    payURL: payUrl)
            }
        }
    }

    /// A webhook event: `type` is `payment_intent.<status>` and `data` the intent after the change.
    package struct Event: Codable, Sendable, Hashable {
        package var id: String
        package var type: String
        /// Unix seconds.
        package var created: Int64
        package var data: Intent

        package init(id: String, type: String, created: Int64, data: Intent) {
            self.id = id
            self.type = type
            self.created = created
            self.data = data
        }

        /// The event type announcing `status`.
        package static func type(for status: PaymentStatus) -> String { "payment_intent.\(status.rawValue)" }

        /// The status an event type announces; `nil` for types Crest does not know.
        package static func status(of type: String) -> PaymentStatus? {
            guard type.hasPrefix("payment_intent.") else { return nil }
            return PaymentStatus(rawValue: String(type.dropFirst("payment_intent.".count)))
        }
    }

    /// `POST /v1/payment_intents/{id}/simulate`: the buyer pays, or the payment fails.
    package struct Simulate: Codable, Sendable {
        package var outcome: PaymentStatus

        package init(outcome: PaymentStatus) { self.outcome = outcome }
    }

    /// The columns of `GET /v1/statements?from=…&to=…` (CSV, unix seconds).
    package static let statementHeader = "payment_id,reference,amount,currency,status,settled_at"
}
