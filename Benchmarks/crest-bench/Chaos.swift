import ArgumentParser
import CrestChaos

/// `crest-bench chaos`: see `ChaosRun` (Tests/CrestChaos) and Benchmarks/chaos.sh.
struct Chaos: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chaos", abstract: "kill -9 mid-sale with payments and provider faults, then check every promise.")

    @Option(help: "sqlite or postgres.") var store = "sqlite"
    @Option(help: "kill -9 of crest serve, each followed by a restart.") var kills = 50
    @Option(help: "Buyers (one key and one order attempt each).") var buyers = 3_000
    @Option(help: "Units for sale.") var stock = 2_000
    @Option(help: "Buyers at the same time.") var concurrency = 32
    @Option(help: "The sale's payment window, seconds.") var paymentWindow = 15
    @Option(help: "Seed of the run's randomness (kill moments, payers, the simulator's faults).") var seed: UInt64 = 1
    @Option(help: "crest serve --payment-creation: order (payers wait for the job's payment) or checkout (payers ask for it).")
    var paymentCreation = "order"

    func run() async throws {
        var chaos = ChaosRun()
        chaos.store = store
        chaos.kills = kills
        chaos.buyers = buyers
        chaos.stock = stock
        chaos.concurrency = concurrency
        chaos.paymentWindow = paymentWindow
        chaos.seed = seed
        chaos.paymentCreation = paymentCreation
        let report = try await chaos.run()
        print(report.lines.joined(separator: "\n"))
        if report.violations > 0 { throw ExitCode(1) }
    }
}
