import CrestCore
import CrestStore
import CrestTestSupport
import Foundation
import Testing

/// The job queue's rules beyond the state diagram's arrows (`JobStateMachineTests` takes those).
@Suite("Store conformance: the job queue")
struct JobConformanceTests {
    @Test("a unique key admits one live job: the second enqueue names the first", arguments: StoreKind.allCases)
    func uniqueKey(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let enqueued = try await store.enqueue(
                [
                    NewJob(kind: "test.a", payload: "1", uniqueKey: "u1"),
                    NewJob(kind: "test.a", payload: "2", uniqueKey: "u1"),
                    NewJob(kind: "test.a", payload: "3"),
                ], at: millisecondNow())
            #expect(enqueued.map(\.duplicate) == [false, true, false])
            #expect(enqueued[0].id == enqueued[1].id)
            #expect(try await store.job(enqueued[0].id)?.payload == "1")
        }
    }

    @Test(
        "a claim takes the due jobs in order with a lease and says when the next one is due; a second worker gets none",
        arguments: StoreKind.allCases)
    func claim(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let now = millisecondNow()
            _ = try await store.enqueue(
                [
                    NewJob(kind: "test.a", payload: "1"),
                    NewJob(kind: "test.b", payload: "2"),
                    NewJob(kind: "test.later", payload: "3", runAt: now.addingTimeInterval(60)),
                ], at: now)
            let claim = try await store.claimJobs(limit: 10, worker: "w1", lease: .seconds(30), at: now)
            #expect(claim.jobs.map(\.payload) == ["1", "2"])
            #expect(claim.jobs.allSatisfy { $0.state == .running && $0.attempt == 1 && $0.leaseUntil == now.addingTimeInterval(30) })
            #expect(claim.nextRunAt == now.addingTimeInterval(60))
            #expect(try await store.claimJobs(limit: 10, worker: "w2", lease: .seconds(30), at: now).jobs.isEmpty)
        }
    }

    @Test("a claim takes no more than its limit, oldest first", arguments: StoreKind.allCases)
    func claimLimit(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let now = millisecondNow()
            _ = try await store.enqueue((1...5).map { NewJob(kind: "test.a", payload: "\($0)") }, at: now)
            let first = try await store.claimJobs(limit: 2, worker: "w1", lease: .seconds(30), at: now)
            #expect(first.jobs.map(\.payload) == ["1", "2"])
            let second = try await store.claimJobs(limit: 10, worker: "w2", lease: .seconds(30), at: now)
            #expect(second.jobs.map(\.payload) == ["3", "4", "5"])
        }
    }

    @Test("a finish is recorded with the error it carries; a finish under another worker's lease is ignored", arguments: StoreKind.allCases)
    func finishedUnderItsLease(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let now = millisecondNow()
            _ = try await store.enqueue(
                [NewJob(kind: "test.a", payload: "1"), NewJob(kind: "test.b", payload: "2", maxAttempts: 1)], at: now)
            let claim = try await store.claimJobs(limit: 10, worker: "w1", lease: .seconds(30), at: now)
            let (a, b) = (claim.jobs[0], claim.jobs[1])
            try await store.finishJobs(
                [
                    JobFinish(lease: a.lease(worker: "w1"), completion: .failed(error: "boom", retryAt: now.addingTimeInterval(1))),
                    JobFinish(lease: b.lease(worker: "someone else"), completion: .completed),
                ], at: now)
            let retryable = try #require(try await store.job(a.id))
            #expect(retryable.state == .retryable && retryable.lastError == "boom")
            #expect(try await store.job(b.id)?.state == .running, "not its lease: ignored")
            try await store.finishJobs(
                [JobFinish(lease: b.lease(worker: "w1"), completion: .failed(error: "fatal", retryAt: nil))], at: now)
            let discarded = try #require(try await store.job(b.id))
            #expect(discarded.state == .discarded && discarded.finalizedAt == now && discarded.lastError == "fatal")
        }
    }

    @Test("a worker's lease extension reaches its running jobs only", arguments: StoreKind.allCases)
    func leasesExtended(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let now = millisecondNow()
            _ = try await store.enqueue([NewJob(kind: "test.a", payload: "1"), NewJob(kind: "test.a", payload: "2")], at: now)
            let mine = try await store.claimJobs(limit: 1, worker: "w1", lease: .seconds(5), at: now).jobs[0]
            let theirs = try await store.claimJobs(limit: 1, worker: "w2", lease: .seconds(5), at: now).jobs[0]
            try await store.extendLeases(worker: "w1", until: now.addingTimeInterval(100))
            #expect(try await store.job(mine.id)?.leaseUntil == now.addingTimeInterval(100))
            #expect(try await store.job(theirs.id)?.leaseUntil == now.addingTimeInterval(5))
        }
    }

    @Test("statistics count live jobs by kind and state and the due ones, leaving completed jobs out", arguments: StoreKind.allCases)
    func statistics(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let now = millisecondNow()
            _ = try await store.enqueue(
                [
                    NewJob(kind: "test.a", payload: "1"), NewJob(kind: "test.b", payload: "2"),
                    NewJob(kind: "test.c", payload: "3", runAt: now.addingTimeInterval(60)),
                ], at: now)
            let claim = try await store.claimJobs(limit: 2, worker: "w1", lease: .seconds(30), at: now)
            try await store.finishJobs(
                [
                    JobFinish(
                        lease: claim.jobs[0].lease(worker: "w1"), completion: .failed(error: "e", retryAt: now.addingTimeInterval(1))),
                    JobFinish(lease: claim.jobs[1].lease(worker: "w1"), completion: .completed),
                ], at: now)
            let stats = try await store.jobStatistics(at: now.addingTimeInterval(2))
            #expect(stats.counts == ["test.a": [.retryable: 1], "test.c": [.scheduled: 1]], "\(stats.counts)")
            #expect(stats.due == 1 && stats.oldestDueRunAt == now.addingTimeInterval(1))
        }
    }

    @Test("completed and discarded jobs past their retention are pruned, younger and live ones kept", arguments: StoreKind.allCases)
    func pruned(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let now = millisecondNow()
            _ = try await store.enqueue(
                [
                    NewJob(kind: "test.a", payload: "done"), NewJob(kind: "test.a", payload: "failed", maxAttempts: 1),
                    NewJob(kind: "test.a", payload: "waiting", runAt: now.addingTimeInterval(600)),
                ], at: now)
            let claim = try await store.claimJobs(limit: 10, worker: "w1", lease: .seconds(30), at: now)
            try await store.finishJobs(
                [
                    JobFinish(lease: claim.jobs[0].lease(worker: "w1"), completion: .completed),
                    JobFinish(lease: claim.jobs[1].lease(worker: "w1"), completion: .failed(error: "e", retryAt: nil)),
                ], at: now)
            // The discarded job is younger than its retention: only the completed one goes.
            #expect(try await store.pruneJobs(completedBefore: now.addingTimeInterval(1), discardedBefore: now) == 1)
            #expect(try await store.job(claim.jobs[0].id) == nil)
            #expect(try await store.job(claim.jobs[1].id)?.state == .discarded)
            #expect(try await store.pruneJobs(completedBefore: now, discardedBefore: now.addingTimeInterval(1)) == 1)
            #expect(try await store.jobs(matching: JobFilter(), after: nil, limit: 10).map(\.payload) == ["waiting"])
        }
    }

    @Test("a job keeps the trace it was enqueued in, enqueued alone or with a reserved order", arguments: StoreKind.allCases)
    func traceParent(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let now = millisecondNow()
            let traced = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            _ = try await store.enqueue(
                [NewJob(kind: "test.t", payload: "1", traceParent: traced), NewJob(kind: "test.t", payload: "2")], at: now)
            let sale = makeSale(stock: 2)
            try await store.createSale(sale)
            _ = try await store.reserve([
                reservation(sale, key: "k1", buyer: "ana", jobs: [NewJob(kind: "test.t", payload: "3", traceParent: traced)]),
                reservation(sale, key: "k2", buyer: "bob", jobs: [NewJob(kind: "test.t", payload: "4")]),
            ])
            let claimed = try await store.claimJobs(limit: 10, worker: "w1", lease: .seconds(30), at: now.addingTimeInterval(1))
            let traces = Dictionary(uniqueKeysWithValues: claimed.jobs.map { ($0.payload, $0.traceParent ?? "none") })
            #expect(traces == ["1": traced, "2": "none", "3": traced, "4": "none"])
        }
    }

    @Test(
        "the orders of a batch that create a payment share one payment.create-batch job, each with its trace; a refused one and one without a payment are not named",
        arguments: StoreKind.allCases)
    func paymentCreationBatch(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let now = millisecondNow()
            let traced = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            let sale = makeSale(stock: 3)
            try await store.createSale(sale)
            var paying = reservation(sale, key: "k1", buyer: "ana", at: now)
            paying.createsPayment = true
            paying.traceParent = traced
            var untraced = reservation(sale, key: "k2", buyer: "bob", at: now)
            untraced.createsPayment = true
            let unpaid = reservation(sale, key: "k3", buyer: "cai", at: now)
            var refused = reservation(sale, key: "k4", buyer: "dan", at: now)
            refused.createsPayment = true
            let result = try await store.reserve([paying, untraced, unpaid, refused])
            #expect(result.outcomes.compactMap(\.order).count == 3, "the stock holds three: dan's is refused")
            // dan's (sold out) and cai's (no payment to create) are not named: only ana's and bob's.
            let jobs = try await store.jobs(matching: JobFilter(kind: PaymentJobs.createBatch.name), after: nil, limit: 10)
            #expect(jobs.count == 1 && jobs.allSatisfy { $0.state == .available && $0.runAt == now })
            let batch = try PaymentJobs.createBatch.parameters(of: try #require(jobs.first))
            #expect(batch.orders.map(\.id) == [paying.orderID, untraced.orderID])
            #expect(batch.orders.map(\.traceParent) == [traced, nil])
            #expect(try await store.jobs(matching: JobFilter(kind: PaymentJobs.create.name), after: nil, limit: 10).isEmpty)
        }
    }

    @Test(
        "a job whose lease runs out on its last attempt is discarded by the next claim, which hands it over once for its hook",
        arguments: StoreKind.allCases)
    func rescueOnTheLastAttempt(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let now = millisecondNow()
            let id = try await store.enqueue([NewJob(kind: "test.once", payload: "p", maxAttempts: 1)], at: now)[0].id
            // Its only attempt's worker dies.
            #expect(try await store.claimJobs(limit: 10, worker: "dead", lease: .seconds(5), at: now).jobs.map(\.id) == [id])
            let early = try await store.claimJobs(limit: 10, worker: "w", lease: .seconds(5), at: now.addingTimeInterval(4))
            #expect(early.rescued == 0 && early.discarded.isEmpty, "the lease still holds")
            let rescue = try await store.claimJobs(limit: 10, worker: "w", lease: .seconds(5), at: now.addingTimeInterval(6))
            #expect(rescue.rescued == 1 && rescue.jobs.isEmpty)
            let given = try #require(rescue.discarded.first)
            #expect(rescue.discarded.count == 1 && given.id == id && given.kind == "test.once" && given.attempt == 1)
            #expect(given.state == .discarded && given.finalizedAt == now.addingTimeInterval(6))
            #expect(given.lastError?.contains("lease ran out") == true, "\(String(describing: given.lastError))")
            #expect(try await store.job(id)?.state == .discarded)
            #expect(try await store.claimJobs(limit: 10, worker: "w", lease: .seconds(5), at: now.addingTimeInterval(7)).discarded.isEmpty)
        }
    }
}
