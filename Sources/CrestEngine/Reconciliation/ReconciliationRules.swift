import CrestCore
import CrestPayments
import Foundation

/// A difference found, and the heal that closes it when it is safe to make one.
struct Difference: Sendable, Hashable {
    var kind: DifferenceKind
    var paymentID: String
    var orderID: OrderID?
    /// The two books, in words.
    var before: String
    var heal: Heal?

    struct Heal: Sendable, Hashable {
        var change: ReconciliationHeal
        /// Crest's books after the heal, and what it did, in words.
        var after: String
        var action: String
    }
}

/// How one line of the provider's statement is judged against Crest's books: pure, so every rule
/// is tested on its own (`ReconciliationRulesTests`).
enum ReconciliationRules {
    /// The differences a charge line shows. `holder`: Crest's order holding the line's payment id;
    /// `referenced`: the order the line's reference names (looked up when no order holds the payment).
    static func differences(of line: StatementRow, holder: Order?, referenced: Order?) -> [Difference] {
        guard line.kind == .charge else { return [] }
        let provider = "provider: \(line.status.rawValue) \(line.amount) \(line.currency)"
        func books(_ order: Order) -> String {
            let payment = order.payment.map { "payment \($0.id) \($0.status.rawValue)" } ?? "no payment"
            return "\(provider); crest: \(order.status.rawValue), \(payment), \(order.amount.amount) \(order.amount.currency)"
        }
        func refund(key: String) -> ReconciliationHeal { .enqueue(ReconciliationJobs.refunding(line.paymentID, key: key)) }
        func observe(_ order: Order, _ status: PaymentStatus) -> ReconciliationHeal {
            .observe(
                PaymentObservation(
                    orderID: order.id, payment: OrderPayment(id: line.paymentID, status: status, payURL: nil), eventID: nil))
        }

        guard let order = holder else {
            guard line.status == .succeeded else { return [] }
            if let order = referenced {
                if order.payment == nil {
                    // The order's own payment, whose creation Crest never heard back from.
                    return succeeded(line, order, books(order), observe: observe(order, .succeeded))
                }
                return [
                    Difference(
                        kind: .duplicateCharge, paymentID: line.paymentID, orderID: order.id, before: books(order),
                        heal: .init(
                            change: refund(key: "reconcile-refund-\(line.paymentID)"),
                            after: "the extra charge is being refunded", action: "refund of the extra charge enqueued"))
                ]
            }
            return [
                Difference(
                    kind: .orphanCharge, paymentID: line.paymentID, orderID: nil,
                    before: "\(provider), reference \(line.reference); crest: no such order",
                    heal: .init(
                        change: refund(key: "reconcile-refund-\(line.paymentID)"), after: "the charge is being refunded",
                        action: "refund of the charge enqueued"))
            ]
        }

        var found: [Difference] = []
        func report(_ kind: DifferenceKind) {
            found.append(Difference(kind: kind, paymentID: line.paymentID, orderID: order.id, before: books(order), heal: nil))
        }
        if line.currency != order.amount.currency.description {
            report(.currencyDiffers)
        } else if line.amount != order.amount.amount {
            report(.amountDiffers)
        }
        switch (line.status, order.status) {
        case (.succeeded, .pendingPayment):
            found += succeeded(line, order, books(order), observe: observe(order, .succeeded))
        case (.succeeded, .cancelled), (.succeeded, .expired):
            // Crest knowing the success already has its refund under way (the audit checks that).
            if order.payment?.status != .succeeded {
                found += succeeded(line, order, books(order), observe: observe(order, .succeeded))
            }
        case (.succeeded, .refunded):
            found.append(
                Difference(
                    kind: .refundMissingAtProvider, paymentID: line.paymentID, orderID: order.id, before: books(order),
                    heal: .init(
                        change: refund(key: "refund-\(order.id)"), after: "refunded, the refund asked again",
                        action: "refund asked again with its first idempotency key")))
        case (.refunded, .paid):
            report(.refundedButPaid)
        case (.refunded, .cancelled), (.refunded, .expired):
            found.append(
                Difference(
                    kind: .refundNotRecorded, paymentID: line.paymentID, orderID: order.id, before: books(order),
                    heal: .init(change: observe(order, .refunded), after: "refunded", action: "recorded the provider's refund")))
        case (.failed, .paid):
            report(.failedButPaid)
        case (.failed, .cancelled), (.failed, .expired):
            // Crest took the success (and owes a refund of money that never came).
            if order.payment?.status == .succeeded {
                found.append(
                    Difference(
                        kind: .failedNotRecorded, paymentID: line.paymentID, orderID: order.id, before: books(order),
                        heal: .init(
                            change: .markFailed(orderID: order.id, paymentID: line.paymentID),
                            after: "\(order.status.rawValue), its payment failed",
                            action: "recorded the provider's failure: no refund is owed")))
            }
        default:
            break
        }
        return found
    }

    private static func succeeded(_ line: StatementRow, _ order: Order, _ before: String, observe: ReconciliationHeal) -> [Difference] {
        let pending = order.status == .pendingPayment
        return [
            Difference(
                kind: .succeededNotRecorded, paymentID: line.paymentID, orderID: order.id, before: before,
                heal: .init(
                    change: observe, after: pending ? "paid" : "\(order.status.rawValue), its payment refunded",
                    action: pending
                        ? "recorded the provider's success: the order is paid"
                        : "recorded the provider's success after the order ended: a refund is enqueued"))
        ]
    }

    /// An order whose settled payment the statement does not have.
    static func missing(_ order: Order) -> Difference {
        let payment = order.payment.map { "\($0.id) \($0.status.rawValue)" } ?? ""
        return Difference(
            kind: .missingFromStatement, paymentID: order.payment?.id ?? "", orderID: order.id,
            before: "provider: no statement line; crest: \(order.status.rawValue), payment \(payment)", heal: nil)
    }
}
