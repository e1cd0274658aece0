import CrestCore
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
    let gates: StockGates
    let metrics: EngineMetrics
    let logger: Logger
    let clock: @Sendable () -> Date

    var handlers: [String: any JobHandler] {
        [
            OrderJobs.expireKind: JobHandlerFunction(timeout: .seconds(30)) { job in try await expire(job) },
            OrderJobs.confirmKind: JobHandlerFunction(
                timeout: .seconds(30), onDiscard: { job, error in await confirmFailed(job, error: error) }
            ) { job in try await confirm(job) },
        ]
    }

    /// Expires an order still awaiting payment at the end of its window and gives its stock back.
    func expire(_ job: Job) async throws -> JobResult {
        let order = try await order(in: job)
        guard order.status == .pendingPayment else { return .completed }
        let now = clock()
        if now < order.expiresAt {
            // Another node's clock ran ahead of ours: not yet.
            return .snooze(.milliseconds(Int64(order.expiresAt.timeIntervalSince(now) * 1000) + 1))
        }
        let result = try await transition(order.id, by: .expire)
        if result.change == .applied {
            released(result)
            logger.debug("order expired", metadata: ["order": "\(order.id)", "sale": "\(order.saleID)"])
        }
        return .completed
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
