import CrestCore
import CrestPayments
import CrestStore
import Foundation
import Logging

/// The payment half of an order's life, as jobs: its payment created at the provider, a payment
/// that came too late refunded, and every word of the provider (webhook, answer to a query)
/// recorded through one state machine.
extension OrderLifecycle {
    /// Registers the payment jobs. A buyer waits for the payment to exist: retry soon, and while
    /// the circuit is open, wait for it without using attempts.
    func registerPaymentJobs(in handlers: inout JobHandlers, provider: any PaymentProvider) {
        let backoff = Backoff(base: .milliseconds(500), maximum: .seconds(15))
        handlers.register(PaymentJobs.create, timeout: .seconds(30), backoff: backoff) { _, job in
            try await Self.waitingOnOpenCircuit { try await createPayment(job.orderId, provider: provider) }
        }
        handlers.register(PaymentJobs.refund, timeout: .seconds(30), backoff: backoff) { _, job in
            try await Self.waitingOnOpenCircuit { try await refund(job.orderId, provider: provider) }
        }
        handlers.register(PaymentJobs.check, timeout: .seconds(30), backoff: backoff) { _, job in
            try await Self.waitingOnOpenCircuit { try await checkPayment(job.orderId, provider: provider) }
        }
        handlers.register(ReconciliationJobs.refund, timeout: .seconds(30), backoff: backoff) { _, job in
            try await Self.waitingOnOpenCircuit { try await refundForReconciliation(job, provider: provider) }
        }
    }

    /// A refund a reconciliation asked for: an extra charge, a charge for no order, or a refund the
    /// provider lost. A payment the provider already shows refunded needs nothing more.
    func refundForReconciliation(_ job: ReconciliationJobs.Refund, provider: any PaymentProvider) async throws -> JobResult {
        do {
            let refunded = try await provider.refund(paymentID: job.paymentId, idempotencyKey: job.idempotencyKey)
            // The order's own payment (a lost refund): recorded as a webhook would be; an extra
            // charge is no order's payment, and the store refuses it as a mismatch — nothing to record.
            if let observation = refunded.observation() { _ = try? await record(observation) }
        } catch ProviderError.rejected(let status, let detail) {
            guard (try? await provider.payment(id: job.paymentId))?.status == .refunded else {
                throw JobDiscardError("the provider refused the refund (\(status)): \(detail)")
            }
        }
        logger.notice("payment refunded for reconciliation", metadata: ["payment": "\(job.paymentId)"])
        return .completed
    }

    /// Creates the order's payment at the provider (idempotency key: the order id) and records it,
    /// so the order shows where to pay. Retried with backoff while the provider is unavailable.
    func createPayment(_ id: OrderID, provider: any PaymentProvider) async throws -> JobResult {
        let order = try await order(id)
        // A webhook may have told us first; a closed order needs no payment.
        guard order.payment == nil, order.status == .pendingPayment else { return .completed }
        let payment = try await provider.createPayment(
            PaymentRequest(orderID: order.id, amount: order.amount, idempotencyKey: order.id.description))
        guard let observation = payment.observation(), observation.orderID == order.id else {
            metrics.countProviderAnswerRefused("wrong_reference")
            throw JobDiscardError("the provider answered with a payment for \(payment.reference)")
        }
        do {
            _ = try await record(observation)
        } catch let taken as PaymentTakenError {
            try await paymentTaken(taken)
        }
        // The janitor's first look, unless the window ends first: the expiry asks the provider itself.
        let firstCheck = clock().addingTimeInterval(expiry.driftCheckFirst.seconds)
        if firstCheck < order.expiresAt {
            _ = try await store.enqueue([PaymentJobs.checking(order.id, at: firstCheck)], at: clock())
        }
        return .completed
    }

    /// The janitor of an awaited payment: asks the provider how it stands and records what changed
    /// without a webhook (counted as drift), then checks again after a pause as long as the order's
    /// age (between `driftCheckFirst` and `driftCheckLongest`) — until the order ends, or its window
    /// does (the expiry asks the provider itself).
    func checkPayment(_ id: OrderID, provider: any PaymentProvider) async throws -> JobResult {
        let order = try await order(id)
        guard order.status == .pendingPayment, let payment = order.payment else { return .completed }
        let now = clock()
        guard now < order.expiresAt else { return .completed }
        let current: ProviderPayment
        do {
            current = try await provider.payment(id: payment.id)
        } catch ProviderError.notFound, ProviderError.rejected {
            return .completed
        }
        if current.status != payment.status, let observation = current.observation() {
            let record = try await record(observation)
            if record.order.payment?.status != payment.status, current.status == .succeeded || current.status == .failed {
                metrics.countDrift(current.status)
                logger.notice(
                    "payment status drift healed: the provider's word came without a webhook",
                    metadata: ["order": "\(order.id)", "payment": "\(payment.id)", "status": "\(current.status.rawValue)"])
            }
            if record.order.status != .pendingPayment { return .completed }
        }
        let age = now.timeIntervalSince(order.createdAt)
        let pause = min(max(age, expiry.driftCheckFirst.seconds), expiry.driftCheckLongest.seconds)
        guard now.addingTimeInterval(pause) < order.expiresAt else { return .completed }
        return .snooze(.milliseconds(Int64(pause * 1000)))
    }

    /// The provider gave this order a payment id that another order holds — its answer cannot be
    /// true for both. Retrying would get the same answer, so the order is flagged for an operator
    /// and the job discarded; the order expires at the end of its window like any unpaid one.
    private func paymentTaken(_ taken: PaymentTakenError) async throws -> Never {
        metrics.countProviderAnswerRefused("payment_id_taken")
        logger.error(
            "the provider answered with a payment id another order holds; order flagged, not retried",
            metadata: [
                "order": "\(taken.orderID)", "payment": "\(taken.paymentID)", "held_by": "\(taken.heldBy)",
            ])
        try await store.flagOrder(taken.orderID, OrderFlag(reason: .paymentIDTaken, flaggedAt: clock()))
        throw JobDiscardError("the provider gave payment \(taken.paymentID), which order \(taken.heldBy) already holds")
    }

    /// Gives back a payment that succeeded after its order was cancelled or expired.
    func refund(_ id: OrderID, provider: any PaymentProvider) async throws -> JobResult {
        let order = try await order(id)
        guard let payment = order.payment else { throw JobDiscardError("order \(order.id) has no payment") }
        let refunded: ProviderPayment
        do {
            refunded = try await provider.refund(paymentID: payment.id, idempotencyKey: "refund-\(order.id)")
        } catch ProviderError.rejected(let status, let detail) {
            throw JobDiscardError("the provider refused the refund (\(status)): \(detail)")
        }
        if let observation = refunded.observation() { _ = try await record(observation) }
        logger.info("late payment refunded", metadata: ["order": "\(order.id)", "payment": "\(payment.id)"])
        return .completed
    }

    /// Runs a provider job; a refusal by the open circuit snoozes it (no attempt used) instead of
    /// failing it, since nothing was tried.
    static func waitingOnOpenCircuit(_ body: () async throws -> JobResult) async throws -> JobResult {
        do {
            return try await body()
        } catch ProviderError.unavailable(let reason) where reason.cause == .circuitOpen {
            return .snooze(.seconds(1))
        }
    }

    /// Records a payment observation and brings the gate and metrics in line with what it changed.
    func record(_ observation: PaymentObservation) async throws -> PaymentRecord {
        let record: PaymentRecord
        switch try await paymentRecorder.submit(observation) {
        case .success(let recorded): record = recorded
        case .failure(let failure): throw failure.error
        }
        if let transition = record.transition, transition.change == .applied {
            gates.loadedGate(for: transition.order.saleID)?.observe(transition.counters)
            metrics.publish(transition.counters.counters, of: transition.order.saleID)
            logger.info(
                "order \(transition.order.status.rawValue)",
                metadata: ["order": "\(transition.order.id)", "payment": "\(observation.payment.id)"])
        }
        if record.refundEnqueued {
            logger.warning(
                "payment succeeded after the order closed; refunding", metadata: ["order": "\(observation.orderID)"])
        }
        return record
    }
}
