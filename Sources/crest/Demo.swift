import ArgumentParser
import AsyncHTTPClient
import CrestCore
import CrestEngine
import CrestHTTP
import CrestIdentity
import CrestLoad
import CrestPayments
import CrestSimulator
import CrestStore
import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle

/// `crest demo`: the whole story on a fresh machine — Crest on the embedded store in a temporary
/// directory and the provider simulator, both in this process on free loopback ports; a flash
/// sale played against them; the outcome told and audited.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a flash sale end to end in one process: Crest, the provider simulator, the crowd, the audit.")

    @Option(help: "Units on sale") var stock: Int64 = 10_000
    @Option(help: "Order attempts") var attempts = 200_000
    @Option(help: "Distinct buyers") var buyers = 100_000
    @Option(help: "Share of accepted orders that pay (0…1); the rest expire") var payRatio = 0.3
    @Option(help: "Seconds to pay; unpaid orders expire after it") var paymentWindow = 15
    @Option(help: "Attempts in flight at once") var concurrency = 64
    @Option(help: "Share of attempts that repeat an earlier one (a buyer's retry)") var repeatShare = 0.05
    @Option(
        help:
            "When an order's payment is created: checkout (when its buyer comes to pay, as the demo's buyers do at once) or order (by a job moments after every order, as crest serve does by default)"
    )
    var paymentCreation = PaymentCreation.checkout.rawValue
    @Flag(help: "Print the final report as JSON on standard output") var json = false
    @Option(help: "Log level of Crest and the simulator") var logLevel = "error"

    func run() async throws {
        try Console.bootstrapLogging(level: logLevel)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(CrestHTTPServer.metricsFactory(registry: registry))
        let logger = Logger(label: "crest.demo")
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-demo-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }

        let paymentCreation = try PaymentCreation.named(paymentCreation)
        let stack = try await DemoStack.start(
            directory: directory, registry: registry, paymentCreation: paymentCreation, logger: logger)
        Console.say("Crest on \(stack.crestURL) (embedded store in \(directory.path)), provider simulator on \(stack.simulatorURL)")
        Console.say(
            "A flash sale: \(stock) units, one per buyer, \(paymentWindow) s to pay; \(attempts) attempts from \(buyers) buyers; \(Int(payRatio * 100))% of the winners are chosen to pay, and an order's payment is created \(paymentCreation == .checkout ? "when its buyer comes to pay" : "by a job right after the order")."
        )
        var plan = LoadPlan(url: stack.crestURL, adminToken: stack.adminToken)
        plan.buyerPassSecret = stack.buyerPassSecret
        plan.sale.stock = stock
        plan.sale.paymentWindowSeconds = paymentWindow
        plan.sale.title = "crest demo"
        plan.buyers = buyers
        plan.requests = attempts
        plan.repeatShare = repeatShare
        plan.pace = .closed(concurrency: concurrency)
        plan.payRatio = payRatio
        plan.settleGrace = .seconds(30)
        let outcome: Result<LoadReport, any Error>
        do {
            outcome = .success(try await LoadTest(plan: plan, progress: ConsoleProgress()).run())
        } catch {
            outcome = .failure(error)
        }
        try await stack.stop()
        let report = try outcome.get()
        let metrics = String(decoding: registry.emitToBuffer(), as: UTF8.self)
        Console.say(json ? try report.jsonText() : Self.story(report) + "\n\n" + Self.breakdown(metrics))
        if !report.auditPassed { throw ExitCode(1) }
    }

    /// Where a buyer waited: each stage of placing an order, then of its life after, from the
    /// server's own histograms.
    static func breakdown(_ metrics: String) -> String {
        let placing = StageBreakdown(
            metrics: metrics, metric: "crest_order_stage_seconds",
            order: ["admission", "write_path", "gate", "batch_wait", "commit", "answer"])
        let after = StageBreakdown(
            metrics: metrics, metric: "crest_order_lifecycle_seconds",
            order: ["payment_created", "paid", "refunded", "cancelled", "expired", "expiry_late"])
        let webhooks = StageBreakdown(
            metrics: metrics, metric: "crest_provider_webhook_lag_seconds", unlabeled: "webhook_lag")
        return
            (["Where a buyer waited, placing an order (stage, orders, median, 99th percentile):"] + placing.lines
            + ["After placing, from the order's creation (expiry_late: past the payment window):"] + after.lines
            + ["The provider's webhooks, from its event to Crest receiving it:"] + webhooks.lines)
            .joined(separator: "\n")
    }

    /// The outcome in a few sentences, then the report's details.
    static func story(_ report: LoadReport) -> String {
        var lines: [String] = [""]
        if let soldOut = report.soldOutAfterSeconds, let rate = report.sellOutOrdersPerSecond {
            lines.append(
                "Sold out after \(LoadReport.seconds(soldOut)) s at \(LoadReport.rate(rate)) orders/s; p99 \(report.latencyMs.p99) ms over \(report.attempts) attempts (\(LoadReport.rate(report.attemptsPerSecond))/s)."
            )
        } else {
            lines.append(
                "Not sold out: \(report.accepted) orders at \(LoadReport.rate(report.acceptedPerSecond)) orders/s; p99 \(report.latencyMs.p99) ms."
            )
        }
        if let payments = report.payments {
            lines.append(
                "\(payments.paid - payments.paidLate) of the \(payments.chosen) orders chosen to pay were paid in time\(payments.paidLate > 0 ? " (\(payments.paidLate) more after their order had expired, and refunded)" : ""); \(payments.ordersPaid) paid, \(payments.ordersExpired) expired and returned to stock (available now \(report.stock.available), sold \(report.stock.sold))."
            )
            if let notPaid = payments.notPaidStory { lines.append(notPaid + ".") }
        }
        lines.append(report.auditPassed ? "Audit green." : "AUDIT FAILED.")
        lines.append("")
        lines.append(report.text)
        return lines.joined(separator: "\n")
    }
}

/// Crest and the provider simulator, each a live server on a free loopback port of this process,
/// wired to each other.
struct DemoStack {
    let crestURL: String
    let simulatorURL: String
    let adminToken: String
    /// The buyers' passes are signed with it, as the shop's backend would.
    let buyerPassSecret: String
    private let store: SQLiteStore
    private let providerHTTP: HTTPClient
    private let webhookHTTP: HTTPClient
    private let groups: [ServiceGroup]
    private let runs: [Task<Void, any Error>]

    static func start(
        directory: URL, registry: PrometheusCollectorRegistry, paymentCreation: PaymentCreation, logger: Logger
    ) async throws -> DemoStack {
        let secret = UUID().uuidString
        let adminToken = UUID().uuidString
        let buyerPassSecret = UUID().uuidString + UUID().uuidString
        let passKeys = try await BuyerPassKeys.make(secrets: [buyerPassSecret], jwks: nil)
        // Subscribed as the README advises an operator: every type but `created`, which Crest learns
        // from its own call.
        let (dispatcher, webhookHTTP) = WebhookDispatcher.withOwnClient(
            target: nil, logger: logger, subscribed: ProviderAPI.Event.typesCrestNeeds)
        let simulator = PaymentSimulator(
            configuration: .init(publicURL: "http://127.0.0.1", seed: 1, faults: .init()), events: dispatcher)
        let (simulatorPorts, simulatorListening) = AsyncStream.makeStream(of: Int.self)
        let simulatorApp = Application(
            router: SimulatorServer.router(simulator: simulator),
            configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "crest-psp-sim"),
            onServerRunning: { channel in simulatorListening.yield(channel.localAddress?.port ?? 0) },
            logger: logger)
        let simulatorGroup = ServiceGroup(
            configuration: .init(services: [dispatcher, simulatorApp], gracefulShutdownSignals: [], logger: logger))

        let (crestPorts, crestListening) = AsyncStream.makeStream(of: Int.self)
        let simulatorRun = Task { try await simulatorGroup.run() }
        /// What a failed start-up leaves running: the simulator and its webhooks' client.
        func stopSimulator() async {
            simulatorRun.cancel()
            _ = await simulatorRun.result
            try? await webhookHTTP.shutdown()
        }
        var simulatorIterator = simulatorPorts.makeAsyncIterator()
        guard let simulatorPort = await simulatorIterator.next(), simulatorPort > 0 else {
            await stopSimulator()
            throw LoadTestError("the provider simulator did not start")
        }
        let store: SQLiteStore
        do {
            store = try SQLiteStore(directory: directory)
        } catch {
            await stopSimulator()
            throw error
        }
        let simulatorURL = "http://127.0.0.1:\(simulatorPort)"
        simulator.setPublicURL(simulatorURL)
        let providerHTTP = HTTPPaymentProvider.makeClient(connections: 64, traced: false)
        let provider = GuardedProvider(
            HTTPPaymentProvider(http: providerHTTP, baseURL: simulatorURL), configuration: .init(), logger: logger)
        var configuration = EngineConfiguration()
        configuration.jobs.gather = JobRunnerConfiguration.servedGather
        configuration.batchWindow = EngineConfiguration.servedBatchWindow
        configuration.batchLingerBelow = EngineConfiguration.servedBatchLingerBelow
        configuration.paymentCreation = paymentCreation
        let engine = Engine(store: store, configuration: configuration, logger: logger, provider: provider)
        // Served as `crest serve` serves: the route and the channel share the limiter and the risk
        // rules, and the channel refuses what it can tell the route would.
        let buyers = BuyerAuthentication.passes(BuyerPassVerifier(keys: passKeys, clock: SystemClock()))
        let limiter = RateLimiter(limits: AdmissionLimits(), clock: SystemClock())
        let risk = RiskGate(engine: engine, clock: SystemClock(), trackedKeys: AdmissionLimits().trackedKeys)
        let crestApp = Application(
            router: CrestHTTPServer.router(
                engine: engine, adminToken: adminToken, buyerAuthentication: buyers, metrics: registry,
                providerWebhookSecret: secret, tracing: false, limiter: limiter, risk: risk),
            server: CrestHTTPServer.server(
                limits: ConnectionLimits(), writePath: engine.writePath,
                admission: ChannelAdmission(limiter: limiter, buyers: buyers, engine: engine, risk: risk, placesOrders: true)),
            configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: CrestHTTPServer.serverName),
            onServerRunning: CrestHTTPServer.whenListening { channel in crestListening.yield(channel.localAddress?.port ?? 0) },
            logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [engine.batcherService, engine.jobRunnerService, crestApp], gracefulShutdownSignals: [],
                logger: logger))
        let crestRun = Task { try await group.run() }
        var crestIterator = crestPorts.makeAsyncIterator()
        guard let crestPort = await crestIterator.next(), crestPort > 0 else {
            crestRun.cancel()
            _ = await crestRun.result
            await stopSimulator()
            try? await store.close()
            try? await providerHTTP.shutdown()
            throw LoadTestError("Crest did not start")
        }
        let crestURL = "http://127.0.0.1:\(crestPort)"
        dispatcher.setTarget(.init(url: "\(crestURL)/v1/webhooks/provider", secret: secret))
        return DemoStack(
            crestURL: crestURL, simulatorURL: simulatorURL, adminToken: adminToken, buyerPassSecret: buyerPassSecret,
            store: store,
            providerHTTP: providerHTTP, webhookHTTP: webhookHTTP, groups: [group, simulatorGroup], runs: [crestRun, simulatorRun])
    }

    /// Crest first (it drains its requests and jobs), then the simulator; then the store closes.
    func stop() async throws {
        for (group, run) in zip(groups, runs) {
            await group.triggerGracefulShutdown()
            _ = await run.result
        }
        try await store.close()
        try await providerHTTP.shutdown()
        try await webhookHTTP.shutdown()
    }
}
