import CrestChaos
import CrestTestSupport
import Foundation
import Testing

/// The short form of `Benchmarks/chaos.sh`: a small sale with payments under the provider's
/// faults, `crest serve` killed with `kill -9` three times mid-sale and restarted, then every
/// promise checked (see `ChaosRun`): answered orders kept, one order per key, no buyer over its
/// limit, counters conserved, every order final, the money matched at the provider, every event
/// delivered in order, the audit green and reconciliation leaving nothing unresolved.
@Suite("Chaos, short: kill -9 mid-sale with payments and provider faults", .serialized)
struct ChaosTests {
    /// `crest serve`'s default payment creation on the embedded store, payments created at the
    /// checkout on PostgreSQL (Benchmarks/chaos.sh runs all four).
    @Test("no promise broken", arguments: [("sqlite", "order"), ("postgres", "checkout")])
    func noPromiseBroken(store: String, paymentCreation: String) async throws {
        if store == "postgres", try await PostgresCluster.shared() == nil { return }
        var chaos = ChaosRun()
        chaos.store = store
        chaos.paymentCreation = paymentCreation
        chaos.kills = 3
        chaos.buyers = 150
        chaos.stock = 100
        chaos.concurrency = 8
        chaos.paymentWindow = 6
        let report = try await chaos.run()
        #expect(report.violations == 0, "\(report.lines.joined(separator: "\n"))")
        #expect(report.lines.contains { $0.hasPrefix("orders answered 201: ") && !$0.hasSuffix(": 0") }, "\(report.lines)")
        // The payers found their payments (waited for, or asked for at the checkout).
        let paid = report.lines.lazy.compactMap { $0.firstMatch(of: /^statuses: .*\bpaid=(\d+)/).flatMap { Int($0.1) } }.first
        #expect((paid ?? 0) > 0, "\(report.lines)")
    }
}
