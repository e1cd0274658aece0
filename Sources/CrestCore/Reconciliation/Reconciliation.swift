import Foundation

public enum ReconciliationRunKind {}
public typealias ReconciliationRunID = Identifier<ReconciliationRunKind>

/// One comparison of the provider's statement for a window with Crest's payments and orders.
public struct ReconciliationRun: Sendable, Hashable {
    public enum State: String, Sendable, Hashable, Codable, CaseIterable {
        case running, finished, failed
    }

    public var id: ReconciliationRunID
    /// The payments created in `from..<to` are compared.
    public var from: Date
    public var to: Date
    public var state: State
    public var startedAt: Date
    public var finishedAt: Date?
    /// Statement lines judged, those that matched, and the differences found: healed now, healed
    /// by an earlier run (its effect on its way), reported for an operator.
    public var lines: Int
    public var matched: Int
    public var healed: Int
    public var underWay: Int
    public var reported: Int
    /// Why a failed run stopped.
    public var error: String?

    public init(
        id: ReconciliationRunID, from: Date, to: Date, state: State = .running, startedAt: Date, finishedAt: Date? = nil,
        lines: Int = 0, matched: Int = 0, healed: Int = 0, underWay: Int = 0, reported: Int = 0, error: String? = nil
    ) {
        self.id = id
        self.from = from
        self.to = to
        self.state = state
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.lines = lines
        self.matched = matched
        self.healed = healed
        self.underWay = underWay
        self.reported = reported
        self.error = error
    }
}

/// A difference between the provider's books and Crest's.
public enum DifferenceKind: String, Sendable, Hashable, Codable, CaseIterable {
    /// Succeeded at the provider; Crest has the order awaiting payment, or ended without it
    /// (its webhook was lost). Healed: the success is recorded — paid, or refunded if it ended.
    case succeededNotRecorded = "succeeded-not-recorded"
    /// Refunded at the provider; Crest still has the payment succeeded on an ended order.
    /// Healed: the refund is recorded.
    case refundNotRecorded = "refund-not-recorded"
    /// Failed at the provider (after saying it succeeded); Crest has the payment succeeded on an
    /// ended order, and owes a refund of money that never came. Healed: the payment is recorded failed.
    case failedNotRecorded = "failed-not-recorded"
    /// A second charge for an order that has its payment. Healed: the extra charge is refunded.
    case duplicateCharge = "duplicate-charge"
    /// A charge whose reference is no order. Healed: refunded.
    case orphanCharge = "orphan-charge"
    /// Crest refunded the payment; the provider still has it succeeded. Healed: refunded again.
    case refundMissingAtProvider = "refund-missing-at-provider"
    /// Failed at the provider; Crest has the order paid. Reported: goods may be owed nothing.
    case failedButPaid = "failed-but-paid"
    /// Refunded at the provider; Crest has the order paid. Reported.
    case refundedButPaid = "refunded-but-paid"
    /// The statement's amount is not the order's. Reported.
    case amountDiffers = "amount-differs"
    /// The statement's currency is not the order's. Reported.
    case currencyDiffers = "currency-differs"
    /// Crest has the payment succeeded (or refunded); the provider's statement does not have it. Reported.
    case missingFromStatement = "missing-from-statement"
}

/// What a run did with a difference.
public enum Resolution: String, Sendable, Hashable, Codable, CaseIterable {
    /// Crest changed its books (or asked the provider to change its own) to match.
    case healed
    /// An earlier run healed it; its effect is still on its way (a refund job not yet run).
    case healUnderWay = "heal-under-way"
    /// Left for an operator.
    case reported
}

/// One difference a run found, with what it did — the audit record of a heal, written in the
/// heal's own transaction.
public struct ReconciliationItem: Sendable, Hashable {
    public var runID: ReconciliationRunID
    /// 1, 2, … within the run.
    public var sequence: Int
    public var kind: DifferenceKind
    public var resolution: Resolution
    public var paymentID: String
    public var orderID: OrderID?
    /// The two books before, and Crest's after (for a heal), in words.
    public var before: String
    public var after: String
    /// What the heal did ("recorded the payment as succeeded", "refund job enqueued"), or "".
    public var action: String
    public var at: Date
    /// For a reported difference: an operator's word that it is dealt with (`nil`: still open).
    /// It belongs to the difference (kind and payment), so a later run finding it again shows it too.
    public var operatorResolution: OperatorResolution?

    public init(
        runID: ReconciliationRunID, sequence: Int, kind: DifferenceKind, resolution: Resolution, paymentID: String,
        orderID: OrderID?, before: String, after: String = "", action: String = "", at: Date,
        operatorResolution: OperatorResolution? = nil
    ) {
        self.runID = runID
        self.sequence = sequence
        self.kind = kind
        self.resolution = resolution
        self.paymentID = paymentID
        self.orderID = orderID
        self.before = before
        self.after = after
        self.action = action
        self.at = at
        self.operatorResolution = operatorResolution
    }

    /// Reported and not resolved by an operator: a difference still open.
    public var isOpen: Bool { resolution == .reported && operatorResolution == nil }
}

/// An operator's resolution of a reported difference: what was done about it (a refund made by
/// hand, goods held back, the provider's correction awaited) and when.
public struct OperatorResolution: Sendable, Hashable {
    /// The item it was given on.
    public var runID: ReconciliationRunID
    public var sequence: Int
    public var note: String
    public var at: Date

    public init(runID: ReconciliationRunID, sequence: Int, note: String, at: Date) {
        self.runID = runID
        self.sequence = sequence
        self.note = note
        self.at = at
    }

    /// The longest note kept.
    public static let longestNote = 2000
}

/// What became of an operator's resolution of an item.
public enum OperatorResolutionOutcome: Sendable, Hashable {
    /// Recorded now (or given before with the same note); the item as it is now.
    case resolved(ReconciliationItem)
    /// The difference was resolved before, with another note: that resolution.
    case resolvedBefore(OperatorResolution)
    /// A healed difference (or one whose heal is under way) has nothing for an operator to resolve.
    case notReported(Resolution)
    case notFound
}

/// The change a heal makes, in the transaction that records it.
public enum ReconciliationHeal: Sendable, Hashable {
    /// What the provider says, recorded as a webhook's observation would be (the same state machine).
    case observe(PaymentObservation)
    /// A job to run (a refund at the provider).
    case enqueue(NewJob)
    /// The payment of an ended order recorded as failed (no stock or money moves): only while the
    /// order is still cancelled or expired with that payment succeeded.
    case markFailed(orderID: OrderID, paymentID: String)
}

/// A difference to record, with the heal to make in the same transaction (`nil`: reported).
public struct ReconciliationRecord: Sendable, Hashable {
    public var item: ReconciliationItem
    public var heal: ReconciliationHeal?

    public init(item: ReconciliationItem, heal: ReconciliationHeal?) {
        self.item = item
        self.heal = heal
    }
}

/// The jobs reconciliation enqueues.
public enum ReconciliationJobs {
    /// Refunds a provider payment in full: an extra charge, a charge for no order, or a refund the
    /// provider lost (asked again with its first idempotency key).
    public static let refund = JobKind<Refund>("reconcile.refund", maxAttempts: 25)

    public struct Refund: JobParameters {
        public var paymentId: String
        public var idempotencyKey: String

        public init(paymentId: String, idempotencyKey: String) {
            self.paymentId = paymentId
            self.idempotencyKey = idempotencyKey
        }
    }

    /// The refund job of `paymentID`: one live per payment.
    public static func refunding(_ paymentID: String, key: String) -> NewJob {
        refund.job(Refund(paymentId: paymentID, idempotencyKey: key), uniqueKey: "\(refund.name):\(paymentID)")
    }

    /// The scheduled reconciliation: one live job across nodes, snoozing between runs.
    public static let schedule = JobKind<Schedule>("reconcile.scheduled", maxAttempts: 25)

    public struct Schedule: JobParameters {
        public var everySeconds: Int

        public init(everySeconds: Int) { self.everySeconds = everySeconds }
    }

    /// The schedule's job, first due one interval from `now`.
    public static func scheduled(every: Duration, at now: Date) -> NewJob {
        let seconds = Int(every.components.seconds)
        return schedule.job(
            Schedule(everySeconds: seconds), runAt: now.addingTimeInterval(Double(seconds)), uniqueKey: schedule.name)
    }
}
