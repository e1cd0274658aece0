import ArgumentParser
import AsyncHTTPClient
import CrestCore
import CrestSimulator
import Crypto
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import UnixSignals

/// `crest psp-sim`: a payment provider to try Crest with — payment intents, a checkout page that
/// plays the buyer, signed webhooks, refunds, settlement statements — and faults on demand.
struct PSPSim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "psp-sim", abstract: "Run the payment provider simulator.")

    static let host = TextSetting(env: "CREST_PSP_HOST", defaultValue: "127.0.0.1", meaning: "Address to listen on")
    @Option(help: Self.host.help) var host: String?

    @Option(help: Self.portSetting.help) var port: Int?

    static let portSetting = IntSetting(
        name: "port", env: "CREST_PSP_PORT", defaultValue: 8090, range: 0...65_535, meaning: "Port; 0 picks a free one")

    static let webhookURL = TextSetting(
        env: "CREST_PSP_WEBHOOK_URL", meaning: "Where Crest receives webhooks, e.g. http://127.0.0.1:8080/v1/webhooks/provider")
    @Option(help: Self.webhookURL.help) var webhookUrl: String?

    static let webhookSecret = TextSetting(
        env: "CREST_PSP_WEBHOOK_SECRET", defaultText: "generated and printed",
        meaning: "Secret that signs webhooks; give Crest the same one")
    @Option(help: Self.webhookSecret.help) var webhookSecret: String?

    static let webhookMaxInFlight = IntSetting(
        name: "webhook-max-in-flight", env: "CREST_PSP_WEBHOOK_MAX_IN_FLIGHT",
        defaultValue: WebhookDispatcher.ownClientMaxInFlight, range: 1...1_024,
        meaning: "Webhooks sent at once, each on a connection of its own; the others wait their turn in order")
    @Option(help: Self.webhookMaxInFlight.help) var webhookMaxInFlight: Int?

    static let webhookEvents = TextSetting(
        env: "CREST_PSP_WEBHOOK_EVENTS", defaultValue: "all",
        meaning:
            "Event types sent, separated by commas (payment_intent.created, …processing, …failed, …succeeded, …refunded), or all. Crest needs every one but payment_intent.created"
    )
    @Option(help: Self.webhookEvents.help) var webhookEvents: String?

    @Option(help: "Seed of the faults, for reproducible runs; payment ids are unique whatever the seed [env: CREST_PSP_SEED] (default: 1)")
    var seed: UInt64?

    @Option(help: "Fixed latency of each API answer, ms") var latencyMs = 0
    @Option(help: "Extra latency, uniform up to this many ms") var latencyJitterMs = 0
    @Option(help: "Share of API calls answered 500 (0…1)") var errorRate = 0.0
    @Option(help: "Share of API calls that hang, then answer 504 (0…1)") var timeoutRate = 0.0
    @Option(help: "How long a hanging call hangs before its 504, ms") var timeoutMs = 30_000
    @Option(help: "Share of webhooks sent twice (0…1)") var webhookDuplicateRate = 0.0
    @Option(help: "Share of webhooks held back so later ones overtake them (0…1)") var webhookReorderRate = 0.0
    @Option(help: "Delay before every webhook, ms") var webhookDelayMs = 0
    @Option(help: "Share of webhooks never sent (0…1)") var webhookDropRate = 0.0
    @Option(help: "Reconciliation's differences (kept at GET /v1/truth). Share of successes whose webhook is lost (0…1)")
    var successWebhookLossRate = 0.0
    @Option(help: "Share of successes that then fail to settle (0…1)") var failAfterSuccessRate = 0.0
    @Option(help: "Share of charges shown one minor unit off on the statement (0…1)") var statementAmountRate = 0.0
    @Option(help: "Share of charges shown in another currency on the statement (0…1)") var statementCurrencyRate = 0.0
    @Option(help: "Share of charges left out of the statement (0…1)") var statementMissingRate = 0.0
    @Option(help: "Share of successes charged a second time, without a webhook (0…1)") var duplicateChargeRate = 0.0
    @Option(help: "Share of successes followed by a charge for no order (0…1)") var orphanChargeRate = 0.0
    @Option(help: "Share of refunds answered as made and never made (0…1)") var refundLossRate = 0.0

    @Option(help: TextSetting.logLevel.help) var logLevel: String?
    @Option(help: TextSetting.logFormat.help) var logFormat: String?

    func run() async throws {
        let settings = Settings()
        let host = Self.host.value(host, in: settings)
        let port = try Self.portSetting.resolve(port, in: settings)
        var faults = SimulatorFaults()
        faults.latencyMs = latencyMs
        faults.latencyJitterMs = latencyJitterMs
        faults.errorRate = errorRate
        faults.timeoutRate = timeoutRate
        faults.timeoutMs = timeoutMs
        faults.webhookDuplicateRate = webhookDuplicateRate
        faults.webhookReorderRate = webhookReorderRate
        faults.webhookDelayMs = webhookDelayMs
        faults.webhookDropRate = webhookDropRate
        faults.successWebhookLossRate = successWebhookLossRate
        faults.failAfterSuccessRate = failAfterSuccessRate
        faults.statementAmountRate = statementAmountRate
        faults.statementCurrencyRate = statementCurrencyRate
        faults.statementMissingRate = statementMissingRate
        faults.duplicateChargeRate = duplicateChargeRate
        faults.orphanChargeRate = orphanChargeRate
        faults.refundLossRate = refundLossRate
        if let problem = faults.problem { throw ValidationError(problem) }
        try Console.bootstrapLogging(
            level: TextSetting.logLevel.value(logLevel, in: settings), format: TextSetting.logFormat.value(logFormat, in: settings))
        let logger = Logger(label: "crest.psp-sim")

        let given = Self.webhookSecret.resolve(webhookSecret, in: settings)
        let secret = given ?? SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() }
        let webhookURL = Self.webhookURL.resolve(webhookUrl, in: settings)
        let maxInFlight = try Self.webhookMaxInFlight.resolve(webhookMaxInFlight, in: settings)
        let subscribed: Set<PaymentStatus>?
        do {
            subscribed = try WebhookDispatcher.subscription(Self.webhookEvents.value(webhookEvents, in: settings))
        } catch {
            throw ValidationError(error.description)
        }
        let (dispatcher, webhookHTTP) = WebhookDispatcher.withOwnClient(
            target: webhookURL.map { .init(url: $0, secret: secret) }, logger: logger, maxInFlight: maxInFlight,
            subscribed: subscribed)
        let simulator = PaymentSimulator(
            configuration: .init(
                publicURL: "http://\(host):\(port)", seed: try settings.value(seed, env: "CREST_PSP_SEED", default: 1),
                faults: faults),
            events: dispatcher)
        let started = StartedFlag()
        let app = Application(
            router: SimulatorServer.router(simulator: simulator),
            configuration: .init(address: .hostname(host, port: port), serverName: "crest-psp-sim"),
            onServerRunning: { channel in
                started.raise()
                let bound = channel.localAddress?.port ?? port
                simulator.setPublicURL("http://\(host):\(bound)")
                if given == nil { Console.say("webhook secret (generated): \(secret)") }
                if webhookURL == nil { Console.say("no --webhook-url: webhooks are not sent") }
                Console.say("psp-sim listening on http://\(host):\(bound)")
            },
            logger: logger)
        let listener = Listener(server: app, address: "\(host):\(port)", started: started)
        do {
            try await ProcessLifecycle.group([dispatcher, listener], logger: logger).run()
        } catch {
            try? await webhookHTTP.shutdown()
            throw error
        }
        try await webhookHTTP.shutdown()
    }
}
