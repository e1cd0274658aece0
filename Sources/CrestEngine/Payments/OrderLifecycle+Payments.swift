import CrestConcurrency
import CrestCore
import CrestPayments
import CrestStore
import Foundation
import Logging
import Tracing

/// The payment half of an order's life, as jobs: its payment created at the provider, a payment
/// that came too late refunded, and every word of the provider (webhook, answer to a query)
/// recorded through one state machine.
extension OrderLifecycle {
    /// Registers the payment jobs. A buyer waits for the payment to exist: retry soon, and while
    /// the circuit is open, wait for it without using attempts. A creation batch fails as a whole
    /// only when the store does (its orders' own failures are handed over): it retries with the
    /// runner's backoff, as the expiry batch does.
    func registerPaymentJobs(in handlers: inout JobHandlers, provider: any PaymentProvider) {
        let backoff = Self.paymentBackoff
        handlers.register(PaymentJobs.create, timeout: .seconds(30), backoff: backoff) { _, job in
            try await Self.waitingOnOpenCircuit { try await createPayment(job.orderId, provider: provider) }
        }
        handlers.register(
            PaymentJobs.createBatch, timeout: .seconds(120),
            onDiscard: { job, parameters, error in await creationBatchDiscarded(job, orders: parameters?.orders, error: error) }
        ) { _, job in try await createPayments(job.orders, provider: provider) }
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

    /// A buyer waits for the payment to exist: retried soon, then less and less often.
    static let paymentBackoff = Backoff(base: .milliseconds(500), maximum: .seconds(15))

    /// Creates the order's payment at the provider (idempotency key: the order id) and records it,
    /// so the order shows where to pay. Retried with backoff while the provider is unavailable.
    /// Its drift check is planned again (one live per order: the one written with the order
    /// usually is), for an order of a store made before checks were written with their orders.
    func createPayment(_ id: OrderID, provider: any PaymentProvider) async throws -> JobResult {
        let order = try await paymentCreated(for: id, provider: provider)
        if let order, let check = firstDriftCheck(of: order.id, createdAt: clock(), expiresAt: order.expiresAt) {
            _ = try await store.enqueue([check], at: clock())
        }
        return .completed
    }

    /// The first check of an order's payment, `driftCheckFirst` after `createdAt`, unless the
    /// order's window ends first (its expiry asks the provider itself).
    func firstDriftCheck(of id: OrderID, createdAt: Date, expiresAt: Date) -> NewJob? {
        let firstCheck = createdAt.addingTimeInterval(expiry.driftCheckFirst.seconds)
        return firstCheck < expiresAt ? PaymentJobs.checking(id, at: firstCheck) : nil
    }

    /// Creates the payments of the orders of one reservation batch (`payment.create-batch`), each
    /// as `createPayment(_:provider:)` does, each in a span of its order's trace and holding a
    /// place of `creationSlots` while it runs (their drift checks were written with the orders).
    /// An order whose creation fails — the provider out of reach or its circuit open, a failure of
    /// the store — is handed to a keyed `payment.create` job of its own, which retries it alone
    /// with the usual backoff; the others are not held back by it. A batch job run again (its
    /// worker died, it ran past its timeout waiting for places, the hand-overs' enqueue failed)
    /// creates nothing twice: an order with a payment is passed over.
    func createPayments(_ orders: [(id: OrderID, traceParent: String?)], provider: any PaymentProvider) async throws
        -> JobResult
    {
        var handOver: [NewJob] = []
        let batch = await readBatch(orders.map(\.id))
        try await withThrowingTaskGroup(of: NewJob?.self) { group in
            for order in orders {
                group.addTask {
                    try await creationSlots.acquire()
                    defer { creationSlots.release() }
                    return try await createPaymentInBatch(
                        order.id, from: batch, traceParent: order.traceParent, provider: provider)
                }
            }
            while let job = try await group.next() {
                if let job { handOver.append(job) }
            }
        }
        if !handOver.isEmpty {
            _ = try await store.enqueue(handOver, at: clock())
            logger.info("payment creations of a batch handed over", metadata: ["count": "\(handOver.count)"])
        }
        return .completed
    }

    /// How many payments are created at once, by all batch jobs together (`creationSlots`), when
    /// the provider has no guard; with one, its bulkhead's size (`--provider-max-in-flight`, 64 by
    /// default). In a burst, batch jobs (up to the runner's workers, each naming up to 64 orders)
    /// wait for a place in turn instead of being refused by the bulkhead and handed over. Half of
    /// it (32) was measured too few on a slow day: creations fell behind the crowd (RESULTS).
    static let creationSlotCount = 64

    /// One order's payment creation inside its batch, in a `payment.create` span continuing the
    /// order's trace; the `payment.create` job that takes over, if it failed.
    private func createPaymentInBatch(
        _ id: OrderID, from batch: BatchOrders?, traceParent: String?, provider: any PaymentProvider
    ) async throws -> NewJob? {
        let context = traceParent.map(TraceParent.context) ?? ServiceContext.current ?? .topLevel
        return try await withSpan("payment.create", context: context) { span in
            if span.isRecording { span.attributes["crest.order.id"] = id.description }
            do {
                _ = try await paymentCreated(for: id, from: batch, provider: provider)
                return nil
            } catch let discarded as JobDiscardError {
                // As the single job would be discarded: no order, or an answer that cannot be true.
                logger.error(
                    "payment creation given up for an order of a batch", metadata: ["order": "\(id)", "error": "\(discarded)"])
                return nil
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                span.recordError(error)
                let delay: Duration
                if case ProviderError.unavailable(let reason) = error, reason.cause == .circuitOpen {
                    delay = .seconds(1)  // as the single job snoozes on an open circuit
                } else {
                    delay = Self.paymentBackoff.delay(afterAttempt: 1)
                }
                logger.warning(
                    "payment creation handed over to a job of its own", metadata: ["order": "\(id)", "error": "\(error)"])
                let runAt = clock().addingTimeInterval(delay.seconds)
                return PaymentJobs.creation(of: id, at: runAt, traceParent: traceParent)
            }
        }
    }

    /// A batch's payment creation ran out of attempts (its hand-overs could not be enqueued, or it
    /// never finished within its timeout): each of its orders gets a keyed `payment.create` job of
    /// its own, due now — an order with a payment already completes it at once.
    func creationBatchDiscarded(_ job: Job, orders: [(id: OrderID, traceParent: String?)]?, error: String) async {
        guard let orders else {
            logger.error("a payment creation batch with an unreadable payload was discarded", metadata: ["job": "\(job.id)"])
            return
        }
        let now = clock()
        do {
            _ = try await store.enqueue(orders.map { PaymentJobs.creation(of: $0.id, traceParent: $0.traceParent) }, at: now)
            logger.warning(
                "a payment creation batch ran out of attempts; its orders handed to jobs of their own",
                metadata: ["job": "\(job.id)", "orders": "\(orders.count)", "error": "\(error)"])
        } catch {
            logger.error(
                "a payment creation batch ran out of attempts and its orders could not be handed over; they expire unpaid",
                metadata: ["job": "\(job.id)", "orders": "\(orders.count)", "error": "\(error)"])
        }
    }

    /// Creates the order's payment unless it has one, is closed or its window is, and records it;
    /// the order, if it is still awaiting payment within its window.
    private func paymentCreated(for id: OrderID, from batch: BatchOrders? = nil, provider: any PaymentProvider) async throws
        -> Order?
    {
        let order = try await order(id, from: batch)
        // A closed order needs no payment; nor one whose expiry is due (a payment now could only
        // be refunded).
        guard order.status == .pendingPayment, clock() < order.expiresAt else { return nil }
        // A webhook may have told us first, an earlier run of the same batch or the buyer's
        // checkout created it.
        if order.payment == nil {
            do {
                _ = try await createAndRecordPayment(of: order, provider: provider)
            } catch let refused as PaymentProviderRefused {
                throw JobDiscardError(refused.detail)
            } catch let taken as PaymentTakenError {
                try await flagTaken(taken)
                throw JobDiscardError("the provider gave payment \(taken.paymentID), which order \(taken.heldBy) already holds")
            }
        }
        return order
    }

    /// The order with its payment, created at the provider now if it has none: the buyer's
    /// checkout (`POST /v1/orders/{id}/payment`). The payment creation job runs behind every order
    /// placed before it — seconds in a sale's burst, more than a payment window on a slow day —
    /// and a buyer who has come to pay should not wait behind the orders of buyers who have not:
    /// the checkout's call takes the next place among the creations in flight, ahead of the jobs'.
    /// The provider's idempotency key is the order id, as the job's: whoever asks first, there is
    /// one payment, and the job passes over an order that has it.
    func checkout(_ order: Order, provider: any PaymentProvider) async throws -> Order {
        guard order.status == .pendingPayment else { throw OrderError.notPending(current: order.status) }
        if order.payment != nil { return order }
        // Past its window the expiry is due: a payment then could only be refunded. Asked again
        // after the wait for a place.
        func windowOpen() throws {
            guard clock() < order.expiresAt else { throw OrderError.paymentWindowClosed(at: order.expiresAt) }
        }
        try windowOpen()
        try await creationSlots.acquire(ahead: true)
        defer { creationSlots.release() }
        try windowOpen()
        do {
            let paying = try await createAndRecordPayment(of: order, provider: provider).order
            // Created at the checkout only: no drift check was written with the order. Without it
            // the expiry still asks the provider; the buyer has the payment either way. Planned
            // whoever attached the payment (the provider's `created` webhook may have come first);
            // a second checkout's plan is the same keyed job.
            if paymentCreation == .checkout, paying.status == .pendingPayment,
                let check = firstDriftCheck(of: paying.id, createdAt: clock(), expiresAt: paying.expiresAt)
            {
                do {
                    _ = try await store.enqueue([check], at: clock())
                } catch {
                    logger.warning(
                        "the payment's drift check could not be planned", metadata: ["order": "\(paying.id)", "error": "\(error)"])
                }
            }
            return paying
        } catch let taken as PaymentTakenError {
            try await flagTaken(taken)
            throw taken
        }
    }

    /// Creates the payment of `order` at the provider (idempotency key: the order id) and records it.
    private func createAndRecordPayment(of order: Order, provider: any PaymentProvider) async throws -> PaymentRecord {
        let payment = try await provider.createPayment(
            PaymentRequest(orderID: order.id, amount: order.amount, idempotencyKey: order.id.description))
        guard let observation = payment.observation(), observation.orderID == order.id else {
            metrics.countProviderAnswerRefused("wrong_reference")
            throw PaymentProviderRefused(detail: "the provider answered with a payment for \(payment.reference)")
        }
        return try await record(observation)
    }

    /// The janitor of an awaited payment: asks the provider how it stands and records what changed
    /// without a webhook (counted as drift), then checks again after a pause as long as the order's
    /// age (between `driftCheckFirst` and `driftCheckLongest`) — until the order ends, or its window
    /// does (the expiry asks the provider itself).
    func checkPayment(_ id: OrderID, provider: any PaymentProvider) async throws -> JobResult {
        let order = try await order(id)
        guard order.status == .pendingPayment else { return .completed }
        let now = clock()
        guard now < order.expiresAt else { return .completed }
        // No payment yet (its creation is still being retried): nothing to ask about; look again later.
        if let payment = order.payment {
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
        }
        let age = now.timeIntervalSince(order.createdAt)
        let pause = min(max(age, expiry.driftCheckFirst.seconds), expiry.driftCheckLongest.seconds)
        guard now.addingTimeInterval(pause) < order.expiresAt else { return .completed }
        return .snooze(.milliseconds(Int64(pause * 1000)))
    }

    /// The provider gave this order a payment id that another order holds — its answer cannot be
    /// true for both. Retrying would get the same answer, so the order is flagged for an operator
    /// (and the job discarded); the order expires at the end of its window like any unpaid one.
    private func flagTaken(_ taken: PaymentTakenError) async throws {
        metrics.countProviderAnswerRefused("payment_id_taken")
        logger.error(
            "the provider answered with a payment id another order holds; order flagged, not retried",
            metadata: [
                "order": "\(taken.orderID)", "payment": "\(taken.paymentID)", "held_by": "\(taken.heldBy)",
            ])
        try await store.flagOrder(taken.orderID, OrderFlag(reason: .paymentIDTaken, flaggedAt: clock()))
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

/// The provider's answer to a payment creation cannot be used: a refusal (a 4xx), or a payment
/// for another reference than the order. Asking again would get the same answer.
package struct PaymentProviderRefused: DomainError, Hashable {
    package var detail: String
}
