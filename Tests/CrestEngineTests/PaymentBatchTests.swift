import CrestCore
import CrestEngine
import CrestPayments
import CrestStore
import CrestTestSupport
import Foundation
import Logging
import Synchronization
import Testing

/// A reservation batch's orders share one payment creation job (`payment.create-batch`): each
/// order's payment is created as its own job would have created it, and an order whose creation
/// fails is handed to a job of its own without holding the others back.
@Suite("Payment creation by reservation batch")
struct PaymentBatchTests {
    @Test(
        "one job creates a batch's payments (their checks written with the orders); an order the provider cannot be reached for is handed to a keyed job of its own, which creates it once the provider answers; the batch run again creates nothing twice"
    )
    func batchCreation() async throws {
        // The engine's clock is the test's: the batcher lingers on it, hand-overs wait on it.
        let clock = AdjustableClock()
        // bob orders two units: the provider cannot be reached for an amount of ¥20.00.
        let provider = CountingProvider(unreachableAmount: 2000)
        try await EngineFixture.with(configuration: .quickJobsLingering, clock: clock, provider: provider) { fixture in
            let sale = try await fixture.sale(stock: 10, perBuyerLimit: 2, paymentWindowSeconds: 900)
            let placing = Task {
                try await withThrowingTaskGroup(of: Order.self) { group in
                    for buyer in ["ana", "bob", "cai"] {
                        group.addTask {
                            try await fixture.order(sale, buyer: buyer, key: "k-\(buyer)", quantity: buyer == "bob" ? 2 : 1).order
                        }
                    }
                    return try await group.reduce(into: [String: Order]()) { $0[$1.buyer] = $1 }
                }
            }
            // Usually one batch (the batcher lingers on the test's clock until the three are
            // queued); nothing below depends on one.
            _ = try await eventually(timeout: .seconds(8)) { fixture.engine.queuedReservations == 3 }
            clock.advance(by: .seconds(10))
            let orders = try await placing.value
            let (ana, bob, cai) = try (#require(orders["ana"]), #require(orders["bob"]), #require(orders["cai"]))
            let batches = try await fixture.engine.jobs(
                matching: JobFilter(kind: PaymentJobs.createBatch.name), after: nil, limit: 10)
            let named = try batches.flatMap { try PaymentJobs.createBatch.parameters(of: $0).orderIds }
            #expect(named.count == 3 && Set(named) == [ana.id, bob.id, cai.id], "each order in one batch job")
            for batch in batches {
                #expect(try await eventually(timeout: .seconds(30)) { try await fixture.engine.job(batch.id).state == .completed })
            }
            for order in [ana, cai] { #expect(try await fixture.engine.order(order.id).payment != nil) }
            #expect(try await fixture.engine.order(bob.id).payment == nil)
            // Only bob's creation has a job of its own.
            let handedOver = try await fixture.engine.jobs(matching: JobFilter(kind: PaymentJobs.create.name), after: nil, limit: 10)
            #expect(handedOver.map(\.uniqueKey) == ["payment.create:\(bob.id)"], "\(handedOver)")

            // Its own job retries it with its backoff until the provider answers.
            clock.advance(by: .seconds(1))
            #expect(try await eventually(timeout: .seconds(30)) { provider.refusals(of: bob.id) >= 2 })
            // Its drift check, written with the order, comes while there is no payment yet: it
            // looks again later instead of ending.
            let checks = try await fixture.engine.jobs(matching: JobFilter(kind: PaymentJobs.check.name), after: nil, limit: 10)
            let bobsCheck = try #require(checks.first { (try? PaymentJobs.check.parameters(of: $0).orderId) == bob.id })
            clock.advance(by: .seconds(60))
            var check = bobsCheck
            #expect(
                try await eventually(timeout: .seconds(30)) {
                    check = try await fixture.engine.job(bobsCheck.id)
                    return check.attemptedAt != nil && check.state == .scheduled && check.runAt > bobsCheck.runAt
                }, "\(check)")
            provider.unreachableAmount = nil
            #expect(
                try await eventually(timeout: .seconds(30)) {
                    clock.advance(by: .seconds(1))
                    return try await fixture.engine.order(bob.id).payment != nil
                })
            // Each order's payment was created once, and each has one live drift check.
            for order in [ana, bob, cai] { #expect(provider.creations(of: order.id) == 1, "\(order.buyer)") }
            let checked = try await eventually {
                Set(try await Self.liveChecks(fixture)) == [ana.id, bob.id, cai.id]
            }
            #expect(checked)

            // The batch run again (as after its worker died): nothing is created twice, and each
            // order still has one check.
            let again = try await fixture.engine.store.enqueue(
                PaymentJobs.creations(of: [ana, bob, cai].map { (id: $0.id, traceParent: nil) }), at: clock.now())
            let rerun = try #require(again.first?.id)
            #expect(try await eventually(timeout: .seconds(30)) { try await fixture.engine.job(rerun).state == .completed })
            for order in [ana, bob, cai] { #expect(provider.creations(of: order.id) == 1, "\(order.buyer)") }
            #expect(try await Self.liveChecks(fixture).count == 3)
            for order in [ana, bob, cai] {
                #expect(try await fixture.engine.events(of: order.id).map(\.kind) == [.created])
            }
        }
    }

    @Test(
        "a batch job reads its orders with one read of the store; an order whose turn came after the read went stale (it waited for a provider call) is read again alone"
    )
    func batchReadsItsOrdersOnce() async throws {
        // One creation at a time, each taking 300 ms: the second and third wait past the read's freshness.
        let provider = GuardedProvider(
            CountingProvider(pause: .milliseconds(300)), configuration: .init(maxInFlight: 1),
            logger: Logger(label: "crest.test"))
        // The batcher lingers on the test's clock until the three are queued: one reservation
        // batch, one creation job.
        let clock = AdjustableClock()
        try await EngineFixture.withControllableStore(configuration: .quickJobsLingering, clock: clock, provider: provider) {
            fixture, store in
            let sale = try await fixture.sale(stock: 10, paymentWindowSeconds: 900)
            let placing = Task {
                try await withThrowingTaskGroup(of: OrderID.self) { group in
                    for buyer in ["ana", "bob", "cai"] {
                        group.addTask { try await fixture.order(sale, buyer: buyer, key: "k-\(buyer)").order.id }
                    }
                    return try await group.reduce(into: Set<OrderID>()) { $0.insert($1) }
                }
            }
            _ = try await eventually(timeout: .seconds(8)) { fixture.engine.queuedReservations == 3 }
            clock.advance(by: .seconds(10))
            let ids = try await placing.value
            let created = try await eventually(timeout: .seconds(60)) {
                let batches = try await fixture.engine.jobs(
                    matching: JobFilter(kind: PaymentJobs.createBatch.name), after: nil, limit: 10)
                return !batches.isEmpty && batches.allSatisfy { $0.state == .completed }
            }
            #expect(created)
            let reads = store.reads.value
            let batchReads = reads.batches.filter { !Set($0).isDisjoint(with: ids) }
            #expect(Set(batchReads.joined()) == ids, "the batch jobs' reads: \(batchReads)")
            // The first creation may use the batch's read; the two after it waited 300 ms or more.
            let alone = reads.single.filter(ids.contains)
            #expect(alone.count >= 2, "orders read alone: \(alone)")
            for id in ids { #expect(try await fixture.engine.order(id).payment != nil) }
        }
    }

    @Test(
        "a batch's creation that runs out of attempts (its hand-overs never enqueued) hands each of its orders to a keyed job of its own, which creates the payment once the provider answers"
    )
    func discardedBatchHandsOver() async throws {
        let provider = CountingProvider(unreachableAmount: 1000)
        try await EngineFixture.withControllableStore(configuration: .quickJobs, provider: provider) { fixture, store in
            let sale = try await fixture.sale(stock: 5, paymentWindowSeconds: 900)
            // Every attempt's creation fails and its hand-over's enqueue too, as often as the job has attempts.
            store.failEnqueues(of: PaymentJobs.create.name, times: PaymentJobs.createBatch.maxAttempts)
            let order = try await fixture.order(sale, buyer: "ana", key: "k-ana").order
            #expect(try await Self.liveChecks(fixture) == [order.id], "the first drift check is written with the order")
            let batches = try await fixture.engine.jobs(
                matching: JobFilter(kind: PaymentJobs.createBatch.name), after: nil, limit: 10)
            let batch = try #require(batches.first)
            #expect(batches.count == 1)
            // 25 attempts: on a loaded two-core machine each can take seconds.
            let discarded = try await eventually(timeout: .seconds(150)) { try await fixture.engine.job(batch.id).state == .discarded }
            let job = try await fixture.engine.job(batch.id)
            #expect(discarded, "batch job not discarded: \(job)")
            #expect(job.attempt == PaymentJobs.createBatch.maxAttempts)
            var handedOver: [Job] = []
            #expect(
                try await eventually {
                    handedOver = try await fixture.engine.jobs(matching: JobFilter(kind: PaymentJobs.create.name), after: nil, limit: 10)
                    return handedOver.map(\.uniqueKey) == ["payment.create:\(order.id)"]
                }, "\(handedOver)")
            #expect(try await fixture.engine.order(order.id).payment == nil)

            provider.unreachableAmount = nil
            #expect(try await eventually(timeout: .seconds(30)) { try await fixture.engine.order(order.id).payment != nil })
            #expect(provider.creations(of: order.id) == 1)
            #expect(try await Self.liveChecks(fixture) == [order.id], "still one check")
        }
    }

    @Test(
        "the provider calls of batch jobs run side by side share 64 places, the provider guard's default bulkhead; the others wait their turn"
    )
    func sharedPlaces() async throws {
        let provider = HeldProvider()
        try await EngineFixture.with(configuration: .quickJobs, provider: provider) { fixture in
            let sale = try await fixture.sale(stock: 100, paymentWindowSeconds: 900)
            // 100 orders, in as many reservation batches as come: their creations are held by the
            // provider until 64 are in flight.
            let orders = try await Self.placeAtOnce(100, in: sale, on: fixture)
            // Within 30 s alone; beside the suite's crowds on two cores 51 were in after 30 s once.
            #expect(try await eventually(timeout: .seconds(120)) { provider.inFlight == 64 })
            try await Task.sleep(for: .milliseconds(200))
            #expect(provider.inFlight == 64, "no more than 64 get in")
            provider.open()
            try await Self.expectPayments(of: orders, on: fixture)
            #expect(provider.most == 64)
            #expect(try await fixture.engine.jobs(matching: JobFilter(kind: PaymentJobs.create.name), after: nil, limit: 10).isEmpty)
        }
    }

    @Test("behind the provider guard, the places are its bulkhead's: a burst waits its turn and none is refused")
    func guardsPlaces() async throws {
        let held = HeldProvider()
        let guarded = GuardedProvider(
            held, configuration: GuardedProvider.Configuration(timeout: .seconds(60), maxInFlight: 8), logger: Logger(label: "crest.test"))
        // The orders' first drift checks (a minute after them) also call the provider, without a
        // creation's place: a starved CI run that held the burst past a minute saw them refused by
        // the bulkhead (19). They come an hour after here; only creations reach the guard.
        var configuration = EngineConfiguration.quickJobs
        configuration.expiry.driftCheckFirst = .seconds(3600)
        try await EngineFixture.with(configuration: configuration, provider: guarded) { fixture in
            let sale = try await fixture.sale(stock: 30, paymentWindowSeconds: 900)
            let orders = try await Self.placeAtOnce(24, in: sale, on: fixture)
            // Within 30 s alone; a starved full CI run on two cores once took longer.
            #expect(try await eventually(timeout: .seconds(120)) { held.inFlight == 8 })
            try await Task.sleep(for: .milliseconds(200))
            held.open()
            try await Self.expectPayments(of: orders, on: fixture)
            #expect(guarded.status.bulkheadRejected == 0, "refused by the bulkhead: \(guarded.status)")
            #expect(try await fixture.engine.jobs(matching: JobFilter(kind: PaymentJobs.create.name), after: nil, limit: 10).isEmpty)
        }
    }

    @Test("orders reserved together make one job per chunk, each order with its trace when it had one")
    func chunks() throws {
        let ids = (0..<(PaymentJobs.creationBatchSize + 2)).map { _ in OrderID.make() }
        let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let orders = ids.enumerated().map { index, id in (id: id, traceParent: index == 1 ? trace : nil) }
        let jobs = PaymentJobs.creations(of: orders)
        let read = try jobs.map { job in
            try PaymentJobs.createBatch.parameters(
                of: Job(
                    id: JobID(1), kind: job.kind, payload: job.payload, state: .running, attempt: 1,
                    maxAttempts: job.maxAttempts, runAt: Date(), createdAt: Date()))
        }
        #expect(read.map(\.orderIds) == [Array(ids.prefix(PaymentJobs.creationBatchSize)), Array(ids.suffix(2))])
        #expect(read[0].orders.map(\.traceParent) == [nil, trace] + Array(repeating: nil, count: PaymentJobs.creationBatchSize - 2))
        #expect(!jobs[1].payload.contains("traceParents"), "an untraced chunk carries no traces")
        #expect(jobs.allSatisfy { $0.kind == "payment.create-batch" && $0.uniqueKey == nil && $0.runAt == nil })
        let none: [(id: OrderID, traceParent: String?)] = []
        #expect(PaymentJobs.creations(of: none).count == 0)
        // Only a W3C traceparent's characters are written into the hand-made payload.
        var odd = PaymentBatchJob(orderIds: [])
        odd.append(ids[0], traceParent: #"00-"},"x":"1"#)
        #expect(odd.orders.map(\.traceParent) == [nil] && odd.payload == #"{"orderIds":["\#(ids[0])"]}"#)
        let handedOver = PaymentJobs.creation(of: ids[0], at: Date(timeIntervalSince1970: 5), traceParent: trace)
        #expect(handedOver.uniqueKey == "payment.create:\(ids[0])" && handedOver.traceParent == trace)
    }

    /// `count` orders of distinct buyers placed at once, in as many reservation batches as come.
    private static func placeAtOnce(_ count: Int, in sale: Sale, on fixture: EngineFixture) async throws -> [Order] {
        try await withThrowingTaskGroup(of: Order.self) { group in
            for index in 0..<count {
                group.addTask { try await fixture.order(sale, buyer: "b\(index)", key: "k\(index)").order }
            }
            return try await group.reduce(into: [Order]()) { $0.append($1) }
        }
    }

    private static func expectPayments(
        of orders: [Order], on fixture: EngineFixture, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        for order in orders {
            let paid = try await eventually(timeout: .seconds(30)) { try await fixture.engine.order(order.id).payment != nil }
            #expect(paid, "order \(order.id) has no payment", sourceLocation: sourceLocation)
        }
    }

    private static func liveChecks(_ fixture: EngineFixture) async throws -> [OrderID] {
        try await fixture.engine.jobs(matching: JobFilter(kind: PaymentJobs.check.name), after: nil, limit: 100)
            .filter(\.state.isLive).map { try PaymentJobs.check.parameters(of: $0).orderId }
    }
}

/// A provider that cannot be reached for payments of one amount (while it is set); answers every
/// other creation. Counts the creations it answered and refused.
private final class CountingProvider: PaymentProvider {
    private let unreachable: Mutex<Int64?>
    private let created = Mutex<[OrderID: Int]>([:])
    private let refused = Mutex<[OrderID: Int]>([:])

    /// How long each creation takes.
    private let pause: Duration

    init(unreachableAmount: Int64? = nil, pause: Duration = .zero) {
        unreachable = Mutex(unreachableAmount)
        self.pause = pause
    }

    var unreachableAmount: Int64? {
        get { unreachable.withLock { $0 } }
        set { unreachable.withLock { $0 = newValue } }
    }

    func creations(of order: OrderID) -> Int { created.withLock { $0[order] ?? 0 } }
    func refusals(of order: OrderID) -> Int { refused.withLock { $0[order] ?? 0 } }

    func createPayment(_ request: PaymentRequest) async throws -> ProviderPayment {
        guard request.amount.amount != unreachableAmount else {
            refused.withLock { $0[request.orderID, default: 0] += 1 }
            throw ProviderError.unavailable(Unavailable(.connection, "connection refused"))
        }
        if pause > .zero { try await Task.sleep(for: pause) }
        created.withLock { $0[request.orderID, default: 0] += 1 }
        return ProviderPayment(
            id: "pi_\(request.orderID)", reference: request.orderID.description, amount: request.amount, status: .created,
            payURL: nil)
    }

    /// Every payment it created still awaits the buyer.
    func payment(id: String) async throws -> ProviderPayment {
        ProviderPayment(
            id: id, reference: String(id.dropFirst(3)), amount: Money(amount: 1000, currency: Currency("CNY")!), status: .created,
            payURL: nil)
    }

    func refund(paymentID: String, idempotencyKey: String) async throws -> ProviderPayment { throw ProviderError.notFound }

    func statement(from: Date, to: Date) async throws -> [StatementRow] { [] }
}

/// A provider that holds every creation until `open()`; counts the calls in flight.
private final class HeldProvider: PaymentProvider {
    private let state = Mutex((open: false, now: 0, most: 0))

    var inFlight: Int { state.withLock { $0.now } }
    var most: Int { state.withLock { $0.most } }

    func open() { state.withLock { $0.open = true } }

    func createPayment(_ request: PaymentRequest) async throws -> ProviderPayment {
        state.withLock {
            $0.now += 1
            $0.most = max($0.most, $0.now)
        }
        defer { state.withLock { $0.now -= 1 } }
        while !state.withLock({ $0.open }) { try await Task.sleep(for: .milliseconds(5)) }
        return ProviderPayment(
            id: "pi_\(request.orderID)", reference: request.orderID.description, amount: request.amount, status: .created,
            payURL: nil)
    }

    func payment(id: String) async throws -> ProviderPayment { throw ProviderError.notFound }

    func refund(paymentID: String, idempotencyKey: String) async throws -> ProviderPayment { throw ProviderError.notFound }

    func statement(from: Date, to: Date) async throws -> [StatementRow] { [] }
}
