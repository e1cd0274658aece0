import CrestCore
import CrestLoad
import CrestTestSupport
import Foundation
import Testing

/// `crest loadtest` and `crest demo` as a user runs them: child processes, their exit status and
/// what they print.
@Suite("crest loadtest and crest demo, as processes")
struct LoadTestCommandTests {
    @Test("against an honest Crest: exit 0, the JSON report says the audit passed; a wrong token: exit 2")
    func honestServerExitsZero() async throws {
        let (status, output) = try await LiveCrest.with { url in
            let refused = try await CrestCommand.run(
                ["loadtest", "--url", url, "--admin-token", "wrong", "--requests", "10"], timeout: .seconds(60))
            #expect(refused.status == 2, "\(refused.output)")
            #expect(refused.output.contains("answered 401"), "\(refused.output)")
            // Without the shop's secret the buyers have no passes: told, not audited as a sale.
            let passless = try await CrestCommand.run(
                ["loadtest", "--url", url, "--admin-token", LiveCrest.adminToken, "--requests", "10", "--data-dir", "/nonexistent"],
                timeout: .seconds(60))
            #expect(passless.status == 2, "\(passless.output)")
            #expect(passless.output.contains("refused the buyers' passes"), "\(passless.output)")
            return try await CrestCommand.run(
                [
                    "loadtest", "--url", url, "--admin-token", LiveCrest.adminToken, "--stock", "100",
                    "--buyer-pass-secret", LiveCrest.buyerPassSecret,
                    "--requests", "800", "--buyers", "400", "--concurrency", "8", "--json",
                ], timeout: .seconds(120))
        }
        #expect(status == 0, "\(output)")
        let json = try #require(output.firstIndex(of: "{").map { String(output[$0...]) }, "\(output)")
        let report = try JSONDecoder().decode(LoadReport.self, from: Data(json.utf8))
        #expect(report.auditPassed)
        #expect(report.accepted == 100)
        #expect(report.attempts == 800)
    }

    @Test("against a server that loses an order: exit 1, and the output names the failed check")
    func lostOrderExitsOne() async throws {
        let (status, output) = try await LiveCrest.with(store: { try LosingStore(directory: $0, victimNumber: 5) }) {
            url in
            try await CrestCommand.run(
                [
                    "loadtest", "--url", url, "--admin-token", LiveCrest.adminToken, "--stock", "40",
                    "--buyer-pass-secret", LiveCrest.buyerPassSecret,
                    "--requests", "300", "--buyers", "300", "--concurrency", "8",
                ], timeout: .seconds(120))
        }
        #expect(status == 1, "\(output)")
        #expect(output.contains("AUDIT FAILED"), "\(output)")
        #expect(output.contains("FAIL nothing lost"), "\(output)")
        #expect(output.contains("the audit failed"), "\(output)")
    }

    @Test("options that contradict each other, or a server that is not there: a clear message and no audit")
    func cannotRun() async throws {
        let both = try await CrestCommand.run(
            ["loadtest", "--admin-token", "t", "--rate", "100", "--concurrency", "4"], timeout: .seconds(30))
        #expect(both.status != 0 && both.status != nil)
        #expect(both.output.contains("not both"), "\(both.output)")

        let noToken = try await CrestCommand.run(
            ["loadtest", "--url", "http://127.0.0.1:1", "--requests", "1"], timeout: .seconds(30))
        #expect(noToken.status != 0 && noToken.status != nil)
        #expect(noToken.output.contains("--admin-token"), "\(noToken.output)")

        let badDuration = try await CrestCommand.run(
            ["loadtest", "--admin-token", "t", "--duration", "soon"], timeout: .seconds(30))
        #expect(badDuration.status != 0 && badDuration.status != nil)
        #expect(badDuration.output.contains("not a duration"), "\(badDuration.output)")

        let nobody = try await CrestCommand.run(
            ["loadtest", "--url", "http://127.0.0.1:1", "--admin-token", "t", "--requests", "5"], timeout: .seconds(30))
        #expect(nobody.status == 2, "\(nobody.output)")
        #expect(nobody.output.contains("cannot connect"), "\(nobody.output)")
        #expect(!nobody.output.contains("audit"), "\(nobody.output)")
    }

    @Test("crest demo, scaled down: the sale sells out, a share pays, the rest expire back to stock, audit green")
    func demoTellsTheStory() async throws {
        let (status, output) = try await CrestCommand.run(
            [
                "demo", "--stock", "150", "--attempts", "3000", "--buyers", "1500", "--payment-window", "3",
                "--concurrency", "16",
            ], timeout: .seconds(180))
        #expect(status == 0, "\(output)")
        #expect(output.contains("an order's payment is created when its buyer comes to pay"), "\(output)")
        #expect(output.contains("Sold out after"), "\(output)")
        #expect(output.contains("Audit green."), "\(output)")
        // It ends with where a buyer waited: every placement stage, and the lives of the orders after.
        #expect(output.contains("Where a buyer waited, placing an order"), "\(output)")
        for stage in ["admission", "gate", "batch_wait", "commit", "answer", "payment_created", "paid", "expired"] {
            #expect(output.contains("\n  \(stage) "), "no \(stage) in the breakdown: \(output)")
        }
        let story = try #require(output.firstMatch(of: /(\d+) paid, (\d+) expired and returned to stock/), "\(output)")
        let paid = try #require(Int(story.1))
        let expired = try #require(Int(story.2))
        #expect(paid > 0 && expired > 0)
        // Every unit was ordered; an order that expired while the crowd was still there may have
        // been bought again, so there can be more orders than units.
        #expect(paid + expired >= 150, "\(output)")
        #expect(output.contains("sold \(paid))"), "\(output)")
        // The story is true however slow the machine: every chosen order paid, or it says how many
        // were not and why.
        let payers = try #require(output.firstMatch(of: /(\d+) of the (\d+) orders chosen to pay were paid/), "\(output)")
        let (paidChosen, chosen) = (try #require(Int(payers.1)), try #require(Int(payers.2)))
        // Those paid after their order expired (a slow machine) are told beside them, and refunded.
        let paidLate = output.firstMatch(of: /(\d+) more after their order had expired, and refunded/).flatMap { Int($0.1) } ?? 0
        let notPaid = chosen - paidChosen - paidLate
        if notPaid > 0 {
            #expect(output.contains("\(notPaid) of the \(chosen) orders chosen to pay could not be paid — "), "\(output)")
        } else {
            #expect(notPaid == 0 && !output.contains("could not be paid"), "\(output)")
        }
        #expect(!output.contains("sold \(chosen + 150)"), "the progress counts accepted orders, not units sold")

        let bad = try await CrestCommand.run(["demo", "--payment-creation", "later"], timeout: .seconds(30))
        #expect(bad.status == 64 && bad.output.contains("--payment-creation must be order or checkout, not later"), "\(bad.output)")
    }
}
