import CrestCore
import CrestPayments
import CrestStore
import Foundation
import Logging

/// The asynchronous half of an order's life, as jobs: each reservation is a TCC "try"; payment
/// confirms it (reserved → sold), expiry or a cancel cancels it (reserved → available).
///
/// Both handlers are idempotent: the store applies an arrow only from `pending_payment`, so a job
/// that runs twice (its worker died after the change) changes nothing the second time.
struct OrderLifecycle: Sendable {
    let store: any Store
    let transitioner: GroupCommitter<TransitionRequest, TransitionResult?>
    let paymentRecorder: GroupCommitter<PaymentObservation, Result<PaymentRecord, PaymentRecordFailure>>
    let gates: StockGates
    let metrics: EngineMetrics
    let provider: (any PaymentProvider)?
    let expiry: ExpiryPolicy
    let logger: Logger
    let clock: @Sendable () -> Date

    var handlers: [String: any JobHandler] {
        var handlers: [String: any JobHandler] = [
            OrderJobs.expireKind: JobHandlerFunction(timeout: .seconds(30)) { job in try await expire(job) },
            OrderJobs.confirmKind: JobHandlerFunction(
                timeout: .seconds(30), onDiscard: { job, error in await confirmFailed(job, error: error) }
            ) { job in try await confirm(job) },
        ]
        if let provider {
            // A buyer waits for the payment to exist: retry soon, and while the circuit is open,
            // wait for it without using attempts.
            let backoff = Backoff(base: .milliseconds(500), maximum: .seconds(15))
            handlers[PaymentJobs.createKind] = JobHandlerFunction(timeout: .seconds(30), backoff: backoff) { job in
                try await Self.waitingOnOpenCircuit { try await createPayment(job, provider: provider) }
            }
            handlers[PaymentJobs.refundKind] = JobHandlerFunction(timeout: .seconds(30), backoff: backoff) { job in
                try await Self.waitingOnOpenCircuit { try await refund(job, provider: provider) }
            }
        }
        return handlers
    }

    /// Expires an order still awaiting payment at the end of its window and gives its stock back —
    /// after asking the provider about its payment, which may have succeeded without Crest hearing.
    func expire(_ job: Job) async throws -> JobResult {
        let order = try await order(in: job)
        guard order.status == .pendingPayment else { return .completed }
        let now = clock()
        if now < order.expiresAt {
            // Another node's clock ran ahead of ours: not yet.
            return .snooze(.milliseconds(Int64(order.expiresAt.timeIntervalSince(now) * 1000) + 1))
        }
        if let provider, let payment = order.payment {
            let late = now.timeIntervalSince(order.expiresAt)
            do {
                let current = try await provider.payment(id: payment.id)
                if let observation = current.observation() {
                    let record = try await record(observation)
                    if record.order.status != .pendingPayment { return .completed }
                }
                if current.status == .processing, late < expiry.processingGrace.seconds {
                    return .snooze(expiry.processingRecheck)
                }
            } catch ProviderError.unavailable(let reason) {
                guard late >= expiry.unreachableGrace.seconds else { throw ProviderError.unavailable(reason) }
                logger.warning(
                    "expiring without the provider's word; a later success will be refunded",
                    metadata: ["order": "\(order.id)", "error": "\(reason)"])
            } catch let error as ProviderError {
                // The provider answered, and has nothing to report about this payment.
                logger.warning("provider cannot tell about the payment; expiring", metadata: ["order": "\(order.id)", "error": "\(error)"])
            }
        }
        let result = try await transition(order.id, by: .expire)
        if result.change == .applied {
            released(result)
            logger.debug("order expired", metadata: ["order": "\(order.id)", "sale": "\(order.saleID)"])
        }
        return .completed
    }

    /// Creates the order's payment at the provider (idempotency key: the order id) and records it,
    /// so the order shows where to pay. Retried with backoff while the provider is unavailable.
    func createPayment(_ job: Job, provider: any PaymentProvider) async throws -> JobResult {
        let order = try await order(in: job)
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
        return .completed
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
    func refund(_ job: Job, provider: any PaymentProvider) async throws -> JobResult {
        let order = try await order(in: job)
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

    /// Confirms a paid order's reservation. A confirm that comes after the order was cancelled or
    /// expired is refused; the store flagged the order (its money must go back).
    func confirm(_ job: Job) async throws -> JobResult {
        let order = try await order(in: job)
        let result = try await transition(order.id, by: .pay)
        switch result.change {
        case .applied:
            gates.loadedGate(for: order.saleID)?.observe(result.counters)
            metrics.publish(result.counters.counters, of: order.saleID)
            logger.info("order paid", metadata: ["order": "\(order.id)", "sale": "\(order.saleID)"])
        case .repeated:
            break
        case .refused:
            logger.warning(
                "payment confirmed for an order that is no longer pending; flagged",
                metadata: ["order": "\(order.id)", "status": "\(result.order.status.rawValue)"])
        }
        return .completed
    }

    /// The confirmation ran out of attempts: flag the order so that an operator sees it.
    func confirmFailed(_ job: Job, error: String) async {
        guard let id = OrderJobs.orderID(in: job.payload) else { return }
        do {
            try await store.flagOrder(id, OrderFlag(reason: .confirmFailed, flaggedAt: clock()))
            logger.error("order flagged: its payment could not be confirmed", metadata: ["order": "\(id)", "error": "\(error)"])
        } catch {
            logger.critical(
                "could not flag an order whose payment confirmation failed; see the discarded job",
                metadata: ["order": "\(id)", "job": "\(job.id)", "error": "\(error)"])
        }
    }

    /// A live order ended and its units went back to the sale: reopen the sale's gate.
    func released(_ result: TransitionResult) {
        gates.loadedGate(for: result.order.saleID)?.released(
            buyer: result.order.buyer, quantity: result.order.quantity, counters: result.counters)
        metrics.publish(result.counters.counters, of: result.order.saleID)
    }

    /// Through the transition batcher: the changes of all jobs running now share one transaction.
    private func transition(_ id: OrderID, by event: Order.Event) async throws -> TransitionResult {
        guard let result = try await transitioner.submit(TransitionRequest(orderID: id, event: event)) else {
            throw JobDiscardError("order \(id) does not exist")
        }
        return result
    }

    private func order(in job: Job) async throws -> Order {
        guard let id = OrderJobs.orderID(in: job.payload) else {
            throw JobDiscardError("the payload names no order: \(job.payload)")
        }
        guard let order = try await store.order(id) else { throw JobDiscardError("order \(id) does not exist") }
        return order
    }
}
