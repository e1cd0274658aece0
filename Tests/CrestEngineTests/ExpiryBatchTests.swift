import CrestCore
import CrestEngine
import CrestPayments
import CrestStore
import CrestTestSupport
import Foundation
import Synchronization
import Testing

/// A reservation batch's orders share one expiry job (`order.expire-batch`): each order ends as
/// its own job would have ended it, and an order the batch cannot finish now is handed to a job
/// of its own without holding the others back.
@Suite("Expiry by reservation batch")
struct ExpiryBatchTests {
    @Test(
        "one job expires a batch's unpaid orders and passes over a cancelled one; a payment still processing and an unreachable provider are handed to keyed jobs of their own, which end them later"
    )
    func batchExpiry() async throws {
        // The engine's clock is the test's: the batcher lingers on it, orders expire when it moves.
        // It runs at real time between its moves, so the window is an hour (50 s were seen to run
        // out by themselves in a loaded full suite, before the cancel); no drift check within it.
        let clock = AdjustableClock()
        let provider = ScriptedProvider()
        var configuration = EngineConfiguration.quickJobsLingering
        configuration.expiry.driftCheckFirst = .seconds(7_200)
        try await EngineFixture.with(configuration: configuration, clock: clock, provider: provider) { fixture in
            let sale = try await fixture.sale(stock: 10, paymentWindowSeconds: 3_600)
            // Four attempts queued while the batcher lingers on the test's clock: one batch.
            let placing = Task {
                try await withThrowingTaskGroup(of: Order.self) { group in
                    for buyer in ["ana", "bob", "cai", "dan"] {
                        group.addTask { try await fixture.order(sale, buyer: buyer, key: "k-\(buyer)").order }
                    }
                    return try await group.reduce(into: [String: Order]()) { $0[$1.buyer] = $1 }
                }
            }
            // Usually one batch: the batcher lingers (on the test's clock, at most 10 s of real time)
            // until the four are queued. On a loaded machine they may still come in two; nothing
            // below depends on one.
            _ = try await eventually(timeout: .seconds(8)) { fixture.engine.queuedReservations == 4 }
            clock.advance(by: .seconds(10))
            let orders = try await placing.value
            let (paid, unreachable, processing, cancelled) = try (
                #require(orders["ana"]), #require(orders["bob"]), #require(orders["cai"]), #require(orders["dan"])
            )
            let batches = try await fixture.engine.jobs(
                matching: JobFilter(kind: OrderJobs.expireBatch.name), after: nil, limit: 10)
            var named: [OrderID] = []
            for batch in batches {
                let ids = try OrderJobs.expireBatch.parameters(of: batch).orderIds
                named += ids
                #expect(batch.runAt == ids.compactMap { id in orders.values.first { $0.id == id }?.expiresAt }.max())
            }
            #expect(named.count == 4 && Set(named) == Set(orders.values.map(\.id)), "each order in one batch job")
            for order in orders.values {
                #expect(try await eventually(timeout: .seconds(30)) { try await fixture.engine.order(order.id).payment != nil })
            }

            _ = try await fixture.engine.cancelOrder(cancelled.id)
            provider.answer(.unreachable, for: unreachable.id)
            provider.answer(.status(.processing), for: processing.id)
            clock.advance(by: .seconds(3_591))  // past the hour's window, the linger's 10 s included
            _ = try await fixture.waitFor(paid.id, status: .expired)
            for batch in batches {
                #expect(try await eventually { try await fixture.engine.job(batch.id).state == .completed })
            }
            let handedOver = try await fixture.engine.jobs(
                matching: JobFilter(kind: OrderJobs.expire.name), after: nil, limit: 10)
            #expect(
                Set(handedOver.compactMap(\.uniqueKey)) == ["order.expire:\(unreachable.id)", "order.expire:\(processing.id)"],
                "\(handedOver)")
            #expect(try await fixture.engine.order(unreachable.id).status == .pendingPayment)
            #expect(try await fixture.engine.order(processing.id).status == .pendingPayment)

            // The provider answers again: the unreachable one's own job ends it a second later.
            provider.answer(.status(.created), for: unreachable.id)
            clock.advance(by: .seconds(2))
            _ = try await fixture.waitFor(unreachable.id, status: .expired)
            #expect(try await fixture.engine.order(processing.id).status == .pendingPayment, "still processing")
            // The processing payment fails; the recheck expires its order.
            provider.answer(.status(.failed), for: processing.id)
            clock.advance(by: .seconds(6))
            _ = try await fixture.waitFor(processing.id, status: .expired)

            for order in [paid, unreachable, processing] {
                #expect(try await fixture.engine.events(of: order.id).map(\.kind) == [.created, .expired])
            }
            #expect(try await fixture.engine.events(of: cancelled.id).map(\.kind) == [.created, .cancelled])
            #expect(try await fixture.conservedCounters(sale) == StockCounters(total: 10, available: 10, reserved: 0, sold: 0))
        }
    }

    @Test(
        "a batch's expiry that runs out of attempts (its hand-overs never enqueued) hands each of its orders to a keyed job of its own, which ends it once the store lets it"
    )
    func discardedBatchHandsOver() async throws {
        try await EngineFixture.withControllableStore(configuration: .quickJobs) { fixture, store in
            let sale = try await fixture.sale(stock: 5, paymentWindowSeconds: 2)
            // Every expiry fails, so each attempt hands every order over — and that enqueue fails,
            // as often as the batch job has attempts.
            store.setFailingTransitions([.expire])
            store.failEnqueues(of: OrderJobs.expire.name, times: OrderJobs.expireBatch.maxAttempts)
            // One order, so one batch job whose attempts use up the failures.
            let orders = [try await fixture.order(sale, buyer: "ana", key: "k-ana").order]
            let batches = try await fixture.engine.jobs(matching: JobFilter(kind: OrderJobs.expireBatch.name), after: nil, limit: 10)
            let batch = try #require(batches.first)
            #expect(batches.count == 1)
            // 25 attempts: on a loaded two-core machine each can take seconds.
            let discarded = try await eventually(timeout: .seconds(150)) { try await fixture.engine.job(batch.id).state == .discarded }
            let job = try await fixture.engine.job(batch.id)
            #expect(discarded, "batch job not discarded: \(job)")
            #expect(job.attempt == OrderJobs.expireBatch.maxAttempts)
            // The discard's hook hands the orders over once the job is recorded discarded.
            var handedOver: [Job] = []
            let keyed = try await eventually {
                handedOver = try await fixture.engine.jobs(matching: JobFilter(kind: OrderJobs.expire.name), after: nil, limit: 10)
                return Set(handedOver.compactMap(\.uniqueKey)) == Set(orders.map { "order.expire:\($0.id)" })
            }
            #expect(keyed, "\(handedOver)")
            for order in orders { #expect(try await fixture.engine.order(order.id).status == .pendingPayment) }

            store.setFailingTransitions([])
            for order in orders { _ = try await fixture.waitFor(order.id, status: .expired) }
            #expect(try await fixture.conservedCounters(sale) == StockCounters(total: 5, available: 5, reserved: 0, sold: 0))
        }
    }

    @Test("orders created together share one job per run of deadlines within the tolerance, due at the run's latest")
    func grouping() throws {
        let start = Date(timeIntervalSince1970: 1_000)
        let ids = (0..<5).map { _ in OrderID.make() }
        // Two sales' windows in one batch: 30 s and 900 s, a few milliseconds apart each.
        let orders = [
            (ids[0], start.addingTimeInterval(900.004)), (ids[1], start.addingTimeInterval(30)),
            (ids[2], start.addingTimeInterval(900)), (ids[3], start.addingTimeInterval(30.003)),
            (ids[4], start.addingTimeInterval(30 + OrderJobs.expiryTolerance + 0.05)),
        ]
        let jobs = OrderJobs.expiries(of: orders.map { (id: $0.0, expiresAt: $0.1) })
        let read = try jobs.map { job in
            try OrderJobs.expireBatch.parameters(
                of: Job(
                    id: JobID(1), kind: job.kind, payload: job.payload, state: .running, attempt: 1,
                    maxAttempts: job.maxAttempts, runAt: job.runAt ?? start, createdAt: start))
        }
        #expect(read.map(\.orderIds) == [[ids[1], ids[3]], [ids[4]], [ids[2], ids[0]]])
        #expect(jobs.map(\.runAt) == [start.addingTimeInterval(30.003), orders[4].1, start.addingTimeInterval(900.004)])
        #expect(jobs.allSatisfy { $0.kind == "order.expire-batch" && $0.maxAttempts == 25 && $0.uniqueKey == nil })
        #expect(OrderJobs.expiries(of: [(id: OrderID, expiresAt: Date)]()).isEmpty)
        #expect(OrderJobs.expiry(of: ids[0], at: start, unique: true).uniqueKey == "order.expire:\(ids[0])")
    }
}

/// A provider whose `payment(id:)` answers what the test says for each order.
private final class ScriptedProvider: PaymentProvider {
    enum Answer {
        case status(PaymentStatus)
        case unreachable
    }

    private let answers = Mutex<[OrderID: Answer]>([:])

    func answer(_ answer: Answer, for order: OrderID) { answers.withLock { $0[order] = answer } }

    func createPayment(_ request: PaymentRequest) async throws -> ProviderPayment {
        ProviderPayment(
            id: "pi_\(request.orderID)", reference: request.orderID.description, amount: request.amount, status: .created,
            payURL: nil)
    }

    func payment(id: String) async throws -> ProviderPayment {
        guard let order = OrderID(String(id.dropFirst(3))) else { throw ProviderError.notFound }
        switch answers.withLock({ $0[order] }) ?? .status(.created) {
        case .unreachable:
            throw ProviderError.unavailable(Unavailable(.connection, "connection refused"))
        case .status(let status):
            return ProviderPayment(
                id: id, reference: order.description, amount: Money(amount: 1000, currency: Currency("CNY")!), status: status,
                payURL: nil)
        }
    }

    func refund(paymentID: String, idempotencyKey: String) async throws -> ProviderPayment { throw ProviderError.notFound }

    func statement(from: Date, to: Date) async throws -> [StatementRow] { [] }
}
