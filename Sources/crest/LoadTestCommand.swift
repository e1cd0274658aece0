import ArgumentParser
import CrestLoad
import Foundation

/// `crest loadtest`: a flash sale played against a running Crest, measured and audited.
struct LoadTestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadtest",
        abstract: "Play a flash sale against a running Crest, then audit the outcome.",
        discussion: """
            Creates a sale (or loads --sale), sends order attempts from --buyers distinct buyers — closed loop \
            (--concurrency) or open loop (--rate, latency counted from each attempt's due time) — and, with \
            --pay-ratio, pays that share of the accepted orders at the provider and waits for the rest to expire. \
            Then it audits the server's own account: stock conserved, nothing oversold, every accepted order \
            readable, no buyer over the limit, repeats answered alike. Exit status 1 when the audit fails.
            """)

    static let url = TextSetting(env: "CREST_URL", defaultValue: "http://127.0.0.1:8080", meaning: "Base URL of Crest")
    @Option(help: Self.url.help) var url: String?

    static let adminToken = TextSetting(env: "CREST_ADMIN_TOKEN", meaning: "Admin bearer token of that Crest")
    @Option(help: Self.adminToken.help) var adminToken: String?

    @Option(
        help:
            "HS256 secret to mint the buyers' passes with [env: CREST_BUYER_PASS_SECRETS, first one] (default: the development secret in --data-dir; none there: no passes, for a Crest with --buyer-auth off)"
    )
    var buyerPassSecret: String?

    static let dataDirectory = TextSetting.dataDirectory.meaning(
        "Data directory of the Crest under test, for its development buyer-pass secret")
    @Option(name: .customLong("data-dir"), help: Self.dataDirectory.help) var dataDirectory: String?

    @OptionGroup var load: LoadOptions

    @Option(help: "Use this existing sale instead of creating one")
    var sale: String?

    @Flag(help: "Print the final report as JSON on standard output")
    var json = false

    func run() async throws {
        let settings = Settings()
        let url = Self.url.value(url, in: settings)
        guard let token = Self.adminToken.resolve(adminToken, in: settings) else {
            throw ValidationError("--admin-token is required (or CREST_ADMIN_TOKEN)")
        }
        var plan = try load.plan(url: url, adminToken: token)
        plan.saleID = sale
        plan.buyerPassSecret = try BuyerPassOptions.signingSecret(
            given: buyerPassSecret, dataDirectory: dataDirectory, settings: settings
        ).secret
        if plan.buyerPassSecret == nil {
            Console.complain("crest loadtest: no buyer-pass secret found: sending no passes (for a Crest with --buyer-auth off)")
        }
        if let problem = plan.problem { throw ValidationError(problem) }
        let report: LoadReport
        do {
            report = try await LoadTest(plan: plan, progress: ConsoleProgress()).run()
        } catch let error as LoadTestError {
            Console.complain("crest loadtest: \(error)")
            throw ExitCode(2)
        }
        if json {
            Console.say(try report.jsonText())
        } else {
            Console.say(report.text)
        }
        if !report.auditPassed {
            Console.complain("crest loadtest: the audit failed")
            throw ExitCode(1)
        }
    }
}

/// The crowd and its pace, shared by `crest loadtest` and `crest demo`.
struct LoadOptions: ParsableArguments {
    @Option(help: "Units of the sale the run creates") var stock: Int64 = 10_000
    @Option(help: "Most units one buyer may hold in the created sale") var perBuyerLimit = 1
    @Option(help: "Seconds to pay in the created sale (default: 900, or 20 with --pay-ratio)")
    var paymentWindow: Int?
    @Option(help: "Distinct buyers the attempts come from") var buyers = 10_000
    @Option(help: "Share of attempts that repeat an earlier one with its key (0…1)") var repeatShare = 0.05
    @Option(help: "Units per attempt") var quantity = 1
    @Option(help: "Closed loop: attempts in flight at once (default: 64 unless --rate)") var concurrency: Int?
    @Option(help: "Open loop: attempts per second, sent when due whatever the server does") var rate: Double?
    @Option(help: "Open loop: connections to spread the attempts over") var connections = 64
    @Option(help: "Stop after this many attempts") var requests: Int?
    @Option(help: "Stop after this long, e.g. 30s, 2m, 500ms", transform: parseDuration) var duration: Duration?
    @Option(help: "Share of accepted orders to pay at the provider, the rest expire (0…1)") var payRatio: Double?
    @Option(help: "Limit of one request, e.g. 30s", transform: parseDuration) var timeout: Duration = .seconds(30)
    @Option(
        help: "After the load, how long to send attempts whose fate is unknown (503 or no answer) again with their keys",
        transform: parseDuration)
    var resendFor: Duration = .seconds(20)
    @Option(help: "Seed of the buyers and repeats") var seed: UInt64 = 1
    @Flag(
        help:
            "Send an attempt refused for load (429, 503 overloaded or shed) again with its key after its Retry-After, as a polite client does"
    )
    var retryRefused = false

    func plan(url: String, adminToken: String) throws -> LoadPlan {
        var plan = LoadPlan(url: url, adminToken: adminToken)
        plan.sale.stock = stock
        plan.sale.perBuyerLimit = perBuyerLimit
        plan.sale.paymentWindowSeconds = paymentWindow ?? (payRatio == nil ? 900 : 20)
        plan.buyers = buyers
        plan.repeatShare = repeatShare
        plan.quantity = quantity
        switch (concurrency, rate) {
        case (.some, .some): throw ValidationError("give --concurrency (closed loop) or --rate (open loop), not both")
        case (_, .some(let rate)): plan.pace = .open(rate: rate, connections: connections)
        case (let concurrency, nil): plan.pace = .closed(concurrency: concurrency ?? 64)
        }
        plan.requests = requests
        plan.duration = duration
        if requests == nil && duration == nil { plan.requests = 100_000 }
        plan.payRatio = payRatio
        plan.timeout = timeout
        plan.retryRefused = retryRefused
        plan.resendFor = resendFor
        plan.seed = seed
        return plan
    }
}

/// `30s`, `2m`, `500ms`, or a bare number of seconds.
func parseDuration(_ text: String) throws -> Duration {
    let units: [(suffix: String, nanoseconds: Double)] = [("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9)]
    for unit in units where text.hasSuffix(unit.suffix) {
        if let value = Double(text.dropLast(unit.suffix.count)), value >= 0 {
            return .nanoseconds(Int64(value * unit.nanoseconds))
        }
    }
    if let seconds = Double(text), seconds >= 0 { return .nanoseconds(Int64(seconds * 1e9)) }
    throw ValidationError("\(text) is not a duration (e.g. 30s, 2m, 500ms)")
}
