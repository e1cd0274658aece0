import CrestCore
import CrestFixtures
import CrestHTTP
import CrestLoad
import CrestStore
import CrestTestSupport
import Foundation
import Testing

@Suite("crest loadtest: the load, the report, the audit")
struct LoadTestTests {
    @Test("against an honest Crest: exactly the stock is sold, repeats answer alike, and the audit passes")
    func honestServerPassesTheAudit() async throws {
        let report = try await LiveCrest.with { url in
            var plan = LiveCrest.plan(url, stock: 300, requests: 3_000, buyers: 1_000)
            plan.repeatShare = 0.1
            return try await LoadTest(plan: plan).run()
        }
        #expect(report.auditPassed, "\(report.text)")
        #expect(report.accepted == 300)
        #expect(report.attempts == 3_000)
        #expect(report.replays > 0)
        #expect((report.outcomes["409 sold-out"] ?? 0) > 0, "\(report.outcomes)")
        #expect((report.outcomes["201 replayed"] ?? 0) > 0, "\(report.outcomes)")
        #expect(report.outcomes.values.reduce(0, +) == 3_000)
        #expect(report.soldOutAfterSeconds != nil)
        #expect(report.stock == .init(total: 300, available: 0, reserved: 300, sold: 0))
        #expect(report.latencyMs.p50 > 0 && report.latencyMs.p50 <= report.latencyMs.p99)
        #expect(report.checks.count >= 6)
    }

    @Test(
        "rate-limited attempts are counted apart (429), keep their keys free, and with --retry-refused are sent again after Retry-After until placed"
    )
    func refusalsForLoad() async throws {
        var admission = AdmissionLimits.none
        // Slow enough that no machine spreads the attempts thin enough to pass them all: 30 attempts
        // of 3 buyers within a rate of 2/s and a burst of 2 would need 4 s (at 20/s, a CI machine
        // busy with other suites once sent 60 in the 0.9 s that took, and none was refused).
        admission.perBuyer = RateLimit(rate: 2, burst: 2)
        for retry in [false, true] {
            let report = try await LiveCrest.with(admission: admission) { url in
                var plan = LiveCrest.plan(url, stock: 1_000, requests: 30, buyers: 3)
                plan.sale.perBuyerLimit = 100
                plan.repeatShare = 0
                plan.retryRefused = retry
                return try await LoadTest(plan: plan).run()
            }
            #expect(report.auditPassed, "\(report.text)")
            #expect(report.rateLimited > 0, "\(report.outcomes)")
            #expect(report.check("no server errors")?.passed == true)
            if retry {
                #expect(report.accepted == 30, "every attempt placed in the end: \(report.text)")
                #expect(report.retriedAfterRefusal == report.rateLimited)
            } else {
                #expect(report.accepted + report.rateLimited == 30, "\(report.text)")
                #expect(report.retriedAfterRefusal == 0)
            }
        }
    }

    @Test("chosen orders whose payment never appears are told as such, with the reason, not silently dropped")
    func unpaidChosenOrdersAreTold() async throws {
        // No provider: no order ever gets a payment, so every chosen one runs out of its window.
        let report = try await LiveCrest.with { url in
            var plan = LiveCrest.plan(url, stock: 20, requests: 40, buyers: 40)
            plan.payRatio = 1
            plan.sale.paymentWindowSeconds = 2
            plan.settleGrace = .seconds(20)
            return try await LoadTest(plan: plan).run()
        }
        let payments = try #require(report.payments)
        // Every accepted order is chosen. At least the stock's 20; more when orders expired while
        // the attempts still came (a loaded machine) and gave their units to later winners.
        let chosen = payments.chosen
        #expect(chosen >= 20 && payments.paid == 0 && payments.failed == chosen, "\(payments)")
        #expect(payments.notPaid == ["no_payment_in_window": chosen], "\(payments.notPaid)")
        let story = try #require(payments.notPaidStory)
        #expect(
            story.hasPrefix(
                "\(chosen) of the \(chosen) orders chosen to pay could not be paid — \(chosen): their payment window closed before their payment was created"
            ), "\(story)")
        #expect(report.text.contains("(\(chosen) not paid: \(chosen) no_payment_in_window); orders now"), "\(report.text)")
        #expect(report.auditPassed, "unpaid orders expire: \(report.text)")
    }

    @Test("the wait for late payments' refunds lasts while they keep coming, and gives up after a while without one")
    func waitWhileOwed() async throws {
        let owed = Set((0..<5).map { "order-\($0)" })
        // One refunded per look: 5 looks of 100 ms, longer in all than the patience of 300 ms.
        var looks = 0
        let settled = try await LoadTest.waitWhileOwed(owed, patience: .milliseconds(300), pause: .milliseconds(100)) {
            looks += 1
            return Set($0.sorted().dropFirst())
        }
        #expect(settled.isEmpty && looks == 5, "\(settled), \(looks) looks")
        // None refunded: given up after the patience, those still owed returned.
        let started = ContinuousClock.now
        let left = try await LoadTest.waitWhileOwed(owed, patience: .milliseconds(200), pause: .milliseconds(50)) { $0 }
        #expect(left == owed)
        #expect(ContinuousClock.now - started >= .milliseconds(200))
    }

    @Test("a server that sells more than its stock fails the audit")
    func oversellFailsTheAudit() async throws {
        let report = try await LiveCrest.with(store: { try OversellingStore(directory: $0, extra: 5) }) { url in
            try await LoadTest(plan: LiveCrest.plan(url, stock: 100, requests: 1_000, buyers: 1_000)).run()
        }
        #expect(!report.auditPassed)
        #expect(report.accepted == 105)
        let check = try #require(report.check("no oversell"))
        #expect(!check.passed)
        #expect(check.detail.contains("100 units were put on sale"), "\(check.detail)")
        #expect(report.check("nothing lost")?.passed == true)
    }

    @Test("a server that loses an acknowledged order fails the audit, naming the order")
    func lostOrderFailsTheAudit() async throws {
        let (report, losing) = try await LiveCrest.with(double: { try LosingStore(directory: $0, victimNumber: 17) }) {
            url, _ in
            try await LoadTest(plan: LiveCrest.plan(url, stock: 50, requests: 500, buyers: 500)).run()
        }
        let lost = try #require(losing.lost.value)
        #expect(!report.auditPassed)
        let check = try #require(report.check("nothing lost"))
        #expect(!check.passed)
        #expect(check.detail.contains(lost.description), "\(check.detail)")
    }

    @Test(
        "a store that fails mid-run: 503s, then every attempt whose fate was unknown is sent again with its key, its orders are found, and the audit passes"
    )
    func unavailableStoreIsSettledByResending() async throws {
        let (report, flaky) = try await LiveCrest.with(double: { try FlakyStore(directory: $0, failing: 5..<25) }) {
            url, _ in
            var plan = LiveCrest.plan(url, stock: 1_000, requests: 2_000, buyers: 2_000)
            // Many repeats, so keys answered 503 are repeated during the load too, some while
            // another repeat of theirs is in progress ("409 request-in-progress" tells nothing).
            plan.repeatShare = 0.3
            plan.resendFor = .seconds(90)
            return try await LoadTest(plan: plan).run()
        }
        let committedThenFailed = flaky.committedThenFailed.value
        #expect(committedThenFailed > 0)
        let unavailable = report.outcomes.filter { $0.key.hasPrefix("503") }.values.reduce(0, +)
        #expect(unavailable >= committedThenFailed, "\(report.outcomes)")
        #expect(report.auditPassed, "\(report.text)")
        // Every order in the sale is one the run knows of: the orders of the batches that committed
        // and answered 503 were found by sending their attempts again.
        #expect(Int64(report.accepted) == report.stock.reserved + report.stock.sold, "\(report.text)")
        let unknown = try #require(report.check("no unknown orders"))
        #expect(unknown.detail.contains("0 orders in the sale that no answer named"), "\(unknown.detail)")
        #expect(unknown.detail.contains("sent again"), "\(unknown.detail)")
        #expect(report.check("no server errors")?.detail.contains("503") == true)
    }

    @Test(
        "attempts that time out while the server still works on them: their resends answer \"in progress\", which settles nothing, and later rounds find their orders"
    )
    func inProgressResendsSettleNothing() async throws {
        let (report, stalling) = try await LiveCrest.with(double: { try StallingStore(directory: $0, stall: .seconds(3)) }) {
            url, store in
            // The load runs 1.5 s; from 0.5 s on, the store holds a batch (and the batcher) for 3 s:
            // every attempt then in flight times out at 0.5 s, and is still in progress at the
            // server when the load ends and the resends begin.
            store.arm(at: .now + .milliseconds(500))
            var plan = LiveCrest.plan(url, stock: 1_000_000, requests: 100_000, buyers: 100_000)
            plan.duration = .milliseconds(1_500)
            plan.timeout = .milliseconds(500)
            plan.repeatShare = 0
            // The resends find the orders within seconds here; a CI machine running every suite
            // at once once answered so slowly that 20 s of rounds left 15 attempts unknown.
            plan.resendFor = .seconds(90)
            let report = try await LoadTest(plan: plan).run()
            // Once the stalled batch and those behind it have committed, every order in the sale
            // is one the run knows of.
            #expect(try await eventually(timeout: .seconds(30)) { store.stallEnded.value })
            try await Task.sleep(for: .milliseconds(500))
            let saleID = try #require(SaleID(report.saleId))
            let counters = try #require(try await store.counters(of: saleID))
            #expect(Int64(report.accepted) == counters.counters.reserved, "\(report.text)")
            return report
        }
        #expect(stalling.didStall)
        #expect(report.unanswered > 0, "\(report.outcomes)")
        #expect(report.auditPassed, "\(report.text)")
        let unknown = try #require(report.check("no unknown orders"))
        #expect(unknown.detail.hasPrefix("0 orders in the sale that no answer named"), "\(unknown.detail)")
    }

    @Test("open loop: a server that stalls for 1 s mid-run shows the stall in p99")
    func openLoopCountsTheStall() async throws {
        let (report, stalling) = try await LiveCrest.with(double: { try StallingStore(directory: $0, stall: .seconds(1)) }) {
            url, store in
            store.arm(at: .now + .seconds(1))
            var plan = LiveCrest.plan(url, stock: 1_000_000, requests: 100_000, buyers: 100_000)
            plan.pace = .open(rate: 200, connections: 16)
            plan.duration = .seconds(3)
            plan.repeatShare = 0
            return try await LoadTest(plan: plan).run()
        }
        #expect(stalling.didStall)
        // 600 attempts are due over 3 s; the ~200 due during the stall waited up to a second each.
        // A closed loop would have sent only its 16 in-flight attempts into the stall.
        #expect(report.attempts == 600)
        #expect(report.latencyMs.p99 >= 800, "\(report.latencyMs)")
        #expect(report.latencyMs.max >= 900, "\(report.latencyMs)")
        #expect(report.auditPassed, "\(report.text)")
    }

    @Test("a plan that cannot run is refused before any request")
    func badPlans() async throws {
        var plan = LoadPlan(url: "https://shop.example", adminToken: "t")
        plan.requests = 1
        #expect(plan.problem?.contains("plain HTTP") == true)
        plan.url = "http://127.0.0.1:1"
        #expect(plan.problem == nil)
        plan.requests = nil
        #expect(plan.problem == "give --requests, --duration or both")
        plan.requests = 10
        plan.pace = .open(rate: 0, connections: 1)
        #expect(plan.problem?.contains("--rate") == true)
        plan.pace = .closed(concurrency: 1)
        plan.repeatShare = 1
        #expect(plan.problem?.contains("--repeat-share") == true)
        plan.repeatShare = 0
        plan.resendFor = .seconds(-1)
        #expect(plan.problem == "--resend-for must not be negative")
        plan.resendFor = .zero
        #expect(plan.problem == nil)
        // Nobody listens on port 1: a clear error, not an audit.
        await #expect(throws: LoadTestError.self) { try await LoadTest(plan: plan).run() }
    }
}
