import CrestCore
import CrestPayments
import Foundation
import Testing

@testable import CrestEngine

/// Each rule of how a statement line is judged against Crest's books, on its own.
@Suite("Reconciliation: how a statement line is judged")
struct ReconciliationRulesTests {
    static let now = Date()

    static func order(_ status: Order.Status, payment: (String, PaymentStatus)? = ("pi_1", .succeeded), amount: Int64 = 1000) -> Order {
        Order(
            id: .make(), saleID: .make(), buyer: "ana", quantity: 1, amount: Money(amount: amount, currency: Currency("CNY")!),
            status: status, createdAt: now, expiresAt: now.addingTimeInterval(900), updatedAt: now,
            payment: payment.map { OrderPayment(id: $0.0, status: $0.1, payURL: nil) })
    }

    static func line(_ status: PaymentStatus, payment: String = "pi_1", reference: String, amount: Int64 = 1000, currency: String = "CNY")
        -> StatementRow
    {
        StatementRow(
            lineID: "ch_\(payment)", kind: .charge, paymentID: payment, reference: reference, amount: amount, currency: currency,
            fee: 6, status: status, createdAt: now, settledAt: now)
    }

    static func judge(_ line: StatementRow, holder: Order?, referenced: Order? = nil) -> [DifferenceKind] {
        ReconciliationRules.differences(of: line, holder: holder, referenced: referenced).map(\.kind)
    }

    @Test("agreeing books: no difference")
    func matched() {
        let paid = Self.order(.paid)
        #expect(Self.judge(Self.line(.succeeded, reference: "\(paid.id)"), holder: paid).isEmpty)
        let refunded = Self.order(.refunded, payment: ("pi_1", .refunded))
        #expect(Self.judge(Self.line(.refunded, reference: "\(refunded.id)"), holder: refunded).isEmpty)
        let failed = Self.order(.expired, payment: ("pi_1", .failed))
        #expect(Self.judge(Self.line(.failed, reference: "\(failed.id)"), holder: failed).isEmpty)
        // Known to Crest as succeeded after it ended: its refund is under way.
        let late = Self.order(.expired, payment: ("pi_1", .succeeded))
        #expect(Self.judge(Self.line(.succeeded, reference: "\(late.id)"), holder: late).isEmpty)
    }

    @Test("succeeded at the provider, pending here: healed by recording the success")
    func succeededWhilePending() throws {
        let pending = Self.order(.pendingPayment, payment: ("pi_1", .processing))
        let found = ReconciliationRules.differences(of: Self.line(.succeeded, reference: "\(pending.id)"), holder: pending, referenced: nil)
        #expect(found.map(\.kind) == [.succeededNotRecorded])
        guard case .observe(let observation) = try #require(found.first?.heal).change else {
            Issue.record("not an observation")
            return
        }
        #expect(observation.orderID == pending.id && observation.payment.id == "pi_1" && observation.payment.status == .succeeded)
    }

    @Test("succeeded at the provider for an ended order Crest never heard it for: healed by recording it (a refund follows)")
    func succeededAfterEnd() {
        let expired = Self.order(.expired, payment: ("pi_1", .created))
        #expect(Self.judge(Self.line(.succeeded, reference: "\(expired.id)"), holder: expired) == [.succeededNotRecorded])
        let unrecorded = Self.order(.pendingPayment, payment: nil)
        #expect(
            Self.judge(Self.line(.succeeded, reference: "\(unrecorded.id)"), holder: nil, referenced: unrecorded) == [.succeededNotRecorded]
        )
    }

    @Test("a second charge for an order that has its payment, and a charge for no order: healed by refunds")
    func extraCharges() throws {
        let paid = Self.order(.paid)
        let duplicate = ReconciliationRules.differences(
            of: Self.line(.succeeded, payment: "pi_2", reference: "\(paid.id)"), holder: nil, referenced: paid)
        #expect(duplicate.map(\.kind) == [.duplicateCharge])
        guard case .enqueue(let job) = try #require(duplicate.first?.heal).change else {
            Issue.record("not a refund")
            return
        }
        #expect(job.kind == ReconciliationJobs.refund.name && job.uniqueKey == "reconcile.refund:pi_2")
        #expect(Self.judge(Self.line(.succeeded, payment: "pi_3", reference: "nobody"), holder: nil) == [.orphanCharge])
        // Already refunded at the provider: nothing left to do.
        #expect(Self.judge(Self.line(.refunded, payment: "pi_2", reference: "\(paid.id)"), holder: nil, referenced: paid).isEmpty)
        #expect(Self.judge(Self.line(.refunded, payment: "pi_3", reference: "nobody"), holder: nil).isEmpty)
    }

    @Test("refunded here, succeeded there: the refund is asked again with its first key")
    func refundMissing() throws {
        let refunded = Self.order(.refunded, payment: ("pi_1", .refunded))
        let found = ReconciliationRules.differences(
            of: Self.line(.succeeded, reference: "\(refunded.id)"), holder: refunded, referenced: nil)
        #expect(found.map(\.kind) == [.refundMissingAtProvider])
        guard case .enqueue(let job) = try #require(found.first?.heal).change else {
            Issue.record("not a refund")
            return
        }
        #expect(try ReconciliationJobs.refund.parameters(of: Job.testing(job)).idempotencyKey == "refund-\(refunded.id)")
    }

    @Test("refunded there, not recorded here on an ended order: healed by recording the refund")
    func refundNotRecorded() {
        let expired = Self.order(.expired, payment: ("pi_1", .succeeded))
        #expect(Self.judge(Self.line(.refunded, reference: "\(expired.id)"), holder: expired) == [.refundNotRecorded])
    }

    @Test("failed there after Crest recorded its success on an ended order: healed by recording the failure")
    func failedNotRecorded() {
        let expired = Self.order(.expired, payment: ("pi_1", .succeeded))
        let found = ReconciliationRules.differences(of: Self.line(.failed, reference: "\(expired.id)"), holder: expired, referenced: nil)
        #expect(found.map(\.kind) == [.failedNotRecorded])
        #expect(found.first?.heal?.change == .markFailed(orderID: expired.id, paymentID: "pi_1"))
    }

    @Test("failed or refunded there while paid here, another amount or currency: reported, never healed")
    func reported() {
        let paid = Self.order(.paid)
        for (line, kind) in [
            (Self.line(.failed, reference: "\(paid.id)"), DifferenceKind.failedButPaid),
            (Self.line(.refunded, reference: "\(paid.id)"), .refundedButPaid),
            (Self.line(.succeeded, reference: "\(paid.id)", amount: 1001), .amountDiffers),
            (Self.line(.succeeded, reference: "\(paid.id)", currency: "USD"), .currencyDiffers),
        ] {
            let found = ReconciliationRules.differences(of: line, holder: paid, referenced: nil)
            #expect(found.map(\.kind) == [kind])
            #expect(found.allSatisfy { $0.heal == nil })
        }
        #expect(ReconciliationRules.missing(paid).kind == .missingFromStatement)
        #expect(ReconciliationRules.missing(paid).heal == nil)
    }

    @Test("refund lines are judged through their charge line, not on their own")
    func refundLines() {
        let paid = Self.order(.paid)
        var line = Self.line(.refunded, reference: "\(paid.id)")
        line.kind = .refund
        #expect(Self.judge(line, holder: paid).isEmpty)
    }
}

extension Job {
    /// A stored job with `job`'s kind and payload, to read its parameters back.
    static func testing(_ job: NewJob) -> Job {
        Job(
            id: JobID(1), kind: job.kind, payload: job.payload, state: .available, attempt: 0, maxAttempts: job.maxAttempts,
            runAt: Date(), createdAt: Date())
    }
}
