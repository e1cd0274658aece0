import CrestConcurrency
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
    /// When an order's payment is created: at the checkout only, its first drift check is planned
    /// there (it is otherwise written with the order).
    let paymentCreation: PaymentCreation
    /// Places for payment creations in flight, shared by every batch job of this process: as many
    /// as the provider guard lets calls in flight (`--provider-max-in-flight`), `creationSlotCount`
    /// for a provider without a guard.
    let creationSlots: AsyncSemaphore
    let logger: Logger
    let clock: @Sendable () -> Date

    var handlers: JobHandlers {
        var handlers = JobHandlers()
        handlers.register(OrderJobs.expire, timeout: .seconds(30)) { _, job in try await expire(job.orderId) }
        handlers.register(
            OrderJobs.expireBatch, timeout: .seconds(120),
            onDiscard: { job, parameters, error in await expiryBatchDiscarded(job, orders: parameters?.orderIds, error: error) }
        ) { _, job in try await expire(job.orderIds) }
        handlers.register(
            OrderJobs.confirm, timeout: .seconds(30),
            onDiscard: { job, parameters, error in await confirmFailed(parameters?.orderId, job: job, error: error) }
        ) { _, job in try await confirm(job.orderId) }
        if let provider { registerPaymentJobs(in: &handlers, provider: provider) }
        return handlers
    }

    /// Expires an order still awaiting payment at the end of its window and gives its stock back —
    /// after asking the provider about its payment, which may have succeeded without Crest hearing.
    func expire(_ id: OrderID, from batch: BatchOrders? = nil) async throws -> JobResult {
        let order = try await order(id, from: batch)
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
                // The provider's word is recorded only when it is news: the order's own status is
                // checked again by the expiry's transition, which applies only to a pending order.
                if current.status != payment.status, let observation = current.observation() {
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

    /// Expires the orders of one reservation batch (`order.expire-batch`), each as `expire(_:)`
    /// does, `expiryWidth` at a time. An order it cannot finish now — a payment still processing,
    /// the provider out of reach, a failure of its own — is handed to an `order.expire` job of its
    /// own, which snoozes and retries it alone; the others are not held back by it. The hand-overs
    /// are keyed by order, so a batch job run again (its worker died, the hand-over failed) hands
    /// each over once; the orders it already ended are no longer pending and are passed over.
    func expire(_ ids: [OrderID]) async throws -> JobResult {
        var handOver: [NewJob] = []
        let batch = await readBatch(ids)
        try await withThrowingTaskGroup(of: NewJob?.self) { group in
            var next = ids.makeIterator()
            func start() {
                guard let id = next.next() else { return }
                group.addTask { try await handOverIfUnfinished(id, from: batch) }
            }
            for _ in 0..<Self.expiryWidth { start() }
            while let job = try await group.next() {
                if let job { handOver.append(job) }
                start()
            }
        }
        if !handOver.isEmpty {
            _ = try await store.enqueue(handOver, at: clock())
            logger.debug("orders of an expiry batch handed over", metadata: ["count": "\(handOver.count)"])
        }
        return .completed
    }

    /// How many of a batch's orders are expired at once: their transitions share the transition
    /// batcher's commits, and with a provider each asks it about its payment.
    static let expiryWidth = 16
    /// When an order whose expiry failed inside its batch is tried again, alone.
    static let handOverDelay: Duration = .seconds(1)

    /// Expires one order of a batch; the `order.expire` job that takes over, if it is not done.
    private func handOverIfUnfinished(_ id: OrderID, from batch: BatchOrders?) async throws -> NewJob? {
        let after: Duration
        do {
            switch try await expire(id, from: batch) {
            case .completed: return nil
            case .snooze(let delay): after = delay
            }
        } catch is JobDiscardError {
            // The order does not exist: nothing to expire (as the single job would be discarded).
            logger.error("an expiry batch names an order that does not exist", metadata: ["order": "\(id)"])
            return nil
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            logger.warning("expiry handed over to a job of its own", metadata: ["order": "\(id)", "error": "\(error)"])
            after = Self.handOverDelay
        }
        return OrderJobs.expiry(of: id, at: clock().addingTimeInterval(after.seconds), unique: true)
    }

    /// A batch's expiry ran out of attempts (its hand-overs could not be enqueued, or it never
    /// finished within its timeout): each of its orders gets a keyed `order.expire` job of its own,
    /// due now — an order already ended completes it at once — so that none is left pending with
    /// nothing to end its wait. Should that enqueue fail too, `crest audit` names the orders
    /// (`pending-order-will-move`).
    func expiryBatchDiscarded(_ job: Job, orders: [OrderID]?, error: String) async {
        guard let orders else {
            logger.error("an expiry batch with an unreadable payload was discarded", metadata: ["job": "\(job.id)"])
            return
        }
        let now = clock()
        do {
            _ = try await store.enqueue(orders.map { OrderJobs.expiry(of: $0, at: now, unique: true) }, at: now)
            logger.warning(
                "an expiry batch ran out of attempts; its orders handed to jobs of their own",
                metadata: ["job": "\(job.id)", "orders": "\(orders.count)", "error": "\(error)"])
        } catch {
            logger.error(
                "an expiry batch ran out of attempts and its orders could not be handed over: crest audit names them",
                metadata: ["job": "\(job.id)", "orders": "\(orders.count)", "error": "\(error)"])
        }
    }

    /// Confirms a paid order's reservation. A confirm that comes after the order was cancelled or
    /// expired is refused; the store flagged the order (its money must go back).
    func confirm(_ id: OrderID) async throws -> JobResult {
        let order = try await order(id)
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
    func confirmFailed(_ id: OrderID?, job: Job, error: String) async {
        guard let id else { return }
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

    func order(_ id: OrderID) async throws -> Order {
        guard let order = try await store.order(id) else { throw JobDiscardError("order \(id) does not exist") }
        return order
    }

    /// The order as `batch` read it, while that read is fresh; else (or without a batch) read alone.
    func order(_ id: OrderID, from batch: BatchOrders?) async throws -> Order {
        if let batch, ContinuousClock.now - batch.readAt < BatchOrders.freshFor, let order = batch.orders[id] { return order }
        return try await order(id)
    }

    /// The orders of a batch job read at once; nil when the read failed (each is then read alone,
    /// and fails or is handed over alone, as before).
    func readBatch(_ ids: [OrderID]) async -> BatchOrders? {
        let readAt = ContinuousClock.now
        guard let orders = try? await store.orders(ids: ids) else { return nil }
        return BatchOrders(orders: orders, readAt: readAt)
    }
}

/// The orders of a batch job (an expiry or payment creation batch), read with one wait for the
/// store instead of one per order. At the rates between a sale's bursts a batch holds a few
/// orders, each read was a wake-up of its own (Benchmarks/RESULTS.md). An order whose turn comes
/// later than `freshFor` after the read — it waited for a place among the provider calls — is read
/// again alone: no decision rests on an older view than a read of its own would have given.
struct BatchOrders: Sendable {
    let orders: [OrderID: Order]
    let readAt: ContinuousClock.Instant

    static let freshFor: Duration = .milliseconds(100)
}
