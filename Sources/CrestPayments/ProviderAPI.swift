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

        /// The event types Crest learns from: every status but `created` — Crest records a payment's
        /// creation from the answer to its own call (retried with the same key until answered), so a
        /// `created` webhook only repeats it, one HTTP exchange more per order. Crest accepts it (as a
        /// duplicate); a provider's endpoint subscribed to these types alone saves that work.
        package static let typesCrestNeeds: Set<PaymentStatus> = Set(PaymentStatus.allCases).subtracting([.created])

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
    package static let statementHeader = "line_id,kind,payment_id,reference,amount,fee,currency,status,created,settled"

    /// One line of the provider's statement: a charge (a payment, with its status now) or the
    /// refund of one. A window holds the lines of the payments created in it.
    package struct StatementLine: Codable, Sendable, Hashable {
        package enum Kind: String, Codable, Sendable, Hashable {
            case charge, refund
        }

        package var id: String
        package var kind: Kind
        package var paymentId: String
        /// The merchant's reference: Crest's order id.
        package var reference: String
        /// Minor units; a refund's is what it gave back.
        package var amount: Int64
        /// The provider's fee, minor units.
        package var fee: Int64
        package var currency: String
        package var status: PaymentStatus
        /// Unix seconds: the payment's creation, and when this line's money moved.
        package var created: Int64
        package var settled: Int64

        package init(
            id: String, kind: Kind, paymentId: String, reference: String, amount: Int64, fee: Int64, currency: String,
            status: PaymentStatus, created: Int64, settled: Int64
        ) {
            self.id = id
            self.kind = kind
            self.paymentId = paymentId
            self.reference = reference
            self.amount = amount
            self.fee = fee
            self.currency = currency
            self.status = status
            self.created = created
            self.settled = settled
        }

        package var csv: String {
            "\(id),\(kind.rawValue),\(paymentId),\(reference),\(amount),\(fee),\(currency),\(status.rawValue),\(created),\(settled)"
        }
    }

    /// `GET /v1/payment_intents?reference=…`: every intent made for one reference, oldest first.
    package struct IntentList: Codable, Sendable {
        package var data: [Intent]

        package init(data: [Intent]) { self.data = data }
    }

    /// `GET /v1/statements?from=…&to=…&format=json&limit=…&after=…`: a page of lines in id order.
    package struct StatementPage: Codable, Sendable {
        package var lines: [StatementLine]
        /// Pass as `after` for the next page; absent on the last.
        package var next: String?

        package init(lines: [StatementLine], next: String?) {
            self.lines = lines
            self.next = next
        }
    }

    /// What the simulator did on purpose that a merchant's books will not show — the truth a
    /// reconciliation is checked against (`GET /v1/truth`).
    package struct InjectedDifference: Codable, Sendable, Hashable {
        package enum Kind: String, Codable, Sendable, Hashable, CaseIterable {
            /// The payment succeeded; its webhook was never sent.
            case webhookLost = "webhook-lost"
            /// A second charge for the same reference, without a webhook.
            case duplicateCharge = "duplicate-charge"
            /// The payment succeeded (and said so), then failed to settle.
            case failedAfterSuccess = "failed-after-success"
            /// A refund answered as done that the provider never made.
            case refundLost = "refund-lost"
            /// A charge whose reference is no order.
            case orphanCharge = "orphan-charge"
            /// The statement's amount is one minor unit off.
            case amountDiffers = "amount-differs"
            /// The statement's currency is another one.
            case currencyDiffers = "currency-differs"
            /// The charge is left out of the statement.
            case missingFromStatement = "missing-from-statement"
        }

        package var kind: Kind
        package var paymentId: String
        package var reference: String

        package init(kind: Kind, paymentId: String, reference: String) {
            self.kind = kind
            self.paymentId = paymentId
            self.reference = reference
        }
    }
}
