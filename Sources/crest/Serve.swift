import ArgumentParser
import AsyncHTTPClient
import CrestConcurrency
import CrestCore
import CrestEngine
import CrestHTTP
import CrestStore
import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import NIOPosix
import OTel
import Prometheus
import ServiceLifecycle
import UnixSignals

/// `crest serve`: the HTTP API on the embedded store, until SIGINT or SIGTERM.
///
/// Shutdown is graceful: the server stops accepting and finishes its requests, running jobs finish
/// (or are put back), the batcher commits what is queued, then the store closes.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the Crest HTTP API.")

    static let host = TextSetting(env: "CREST_HOST", defaultValue: "127.0.0.1", meaning: "Address to listen on")
    @Option(help: Self.host.help) var host: String?

    @Option(help: Options.port.help) var port: Int?

    static let opsPort = TextSetting(
        env: "CREST_OPS_PORT", defaultText: "none",
        meaning:
            "A second port for the control plane (/healthz, /readyz, /metrics, the provider's webhooks; it serves the whole API), on an event-loop thread of its own so that a crowd on --port does not delay it; 0 picks a free one"
    )
    @Option(help: Self.opsPort.help) var opsPort: String?

    @OptionGroup var store: StoreOptions

    @OptionGroup var payments: ProviderOptions

    @OptionGroup var buyerPasses: BuyerPassOptions

    @OptionGroup var admission: AdmissionOptions
    @OptionGroup var overload: OverloadOptions

    static let adminToken = TextSetting(
        env: "CREST_ADMIN_TOKEN", defaultText: "generated once, kept in the data directory", meaning: "Bearer token for admin routes")
    @Option(help: Self.adminToken.help) var adminToken: String?

    @Option(help: Options.batchWindow.help) var batchWindowUs: Int?
    @Option(help: Options.batchLingerBelow.help) var batchLingerBelow: Int?

    @Option(help: Options.maxBatch.help) var maxBatch: Int?

    @Option(help: Options.refusalMemory.help) var refusalMemory: Int?

    @Option(help: Options.gateIdle.help) var gateIdleSeconds: Int?

    @Option(help: Options.jobWorkers.help) var jobWorkers: Int?

    @Option(help: Options.jobLease.help) var jobLeaseSeconds: Int?

    @Option(help: Options.jobGather.help) var jobGatherMs: Int?

    @Option(help: Options.reconcileEvery.help) var reconcileEveryMinutes: Int?

    @Option(help: TextSetting.logLevel.help) var logLevel: String?
    @Option(help: TextSetting.logFormat.help) var logFormat: String?

    static let otlpEndpoint = TextSetting(
        env: "CREST_OTLP_ENDPOINT", defaultText: "none, no traces exported",
        meaning:
            "Base URL of an OpenTelemetry collector's OTLP/HTTP receiver; spans are posted to <URL>/v1/traces. The OTEL_* variables of the OpenTelemetry SDK apply too"
    )
    @Option(help: Self.otlpEndpoint.help) var otlpEndpoint: String?

    func run() async throws {
        let settings = Settings()
        let host = Self.host.value(host, in: settings)
        let port = try Options.port.resolve(port, in: settings)
        let dataDirectory = try store.directory(settings)
        // The linger was measured on the embedded store only; PostgreSQL's batches keep none unless asked.
        let windowMicros = try Options.batchWindow.resolve(
            batchWindowUs, in: settings, default: store.postgresURL(settings) == nil ? nil : 0)
        let lingerBelow = try Options.batchLingerBelow.resolve(batchLingerBelow, in: settings)
        let maxBatch = try Options.maxBatch.resolve(maxBatch, in: settings)
        let refusalMemory = try Options.refusalMemory.resolve(refusalMemory, in: settings)
        let gateIdleSeconds = try Options.gateIdle.resolve(gateIdleSeconds, in: settings)
        let jobWorkers = try Options.jobWorkers.resolve(jobWorkers, in: settings)
        let jobLease = try Options.jobLease.resolve(jobLeaseSeconds, in: settings)
        let jobGather = try Options.jobGather.resolve(jobGatherMs, in: settings)
        let reconcileMinutes = try Options.reconcileEvery.resolve(reconcileEveryMinutes, in: settings)
        let paymentCreation = try ProviderOptions.paymentCreation(payments.paymentCreation, in: settings)
        let levelName = TextSetting.logLevel.value(logLevel, in: settings)
        let tracing = try TracingSettings(
            endpoint: Self.otlpEndpoint.resolve(otlpEndpoint, in: settings),
            environment: ProcessInfo.processInfo.environment)

        try Console.bootstrapLogging(
            level: levelName, format: TextSetting.logFormat.value(logFormat, in: settings),
            metadataProvider: tracing.enabled ? OTel.makeLoggingMetadataProvider() : nil)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(CrestHTTPServer.metricsFactory(registry: registry))
        let logger = Logger(label: "crest")
        // Before anything makes an HTTP client: AsyncHTTPClient takes the tracer it finds then.
        let tracer = try tracing.bootstrap(logger: Logger(label: "crest.otel"))
        if tracer != nil {
            logger.info(
                "exporting traces over OTLP/HTTP",
                metadata: ["endpoint": "\(tracing.tracesEndpoint ?? "from the OTEL_* variables")"])
        }

        let givenToken = Self.adminToken.resolve(adminToken, in: settings)
        if store.postgresURL(settings) != nil, givenToken == nil {
            throw ValidationError("with --database-url, give --admin-token (or CREST_ADMIN_TOKEN): every node must share it")
        }
        if store.postgresURL(settings) == nil { try StoreOptions.prepare(dataDirectory) }
        let token = try KeptSecret.adminToken.resolve(given: givenToken, dataDirectory: dataDirectory)
        if token.generated {
            // Said now, not once listening: a start-up that fails later has still written it.
            Console.say(
                "admin token (generated, kept in \(KeptSecret.adminToken.file(in: dataDirectory).path)): \(token.secret)")
        }
        try store.validate(settings)
        let limits = try admission.limits(settings)
        let writePath = try overload.writePath(settings)
        let shedding = try overload.shedding(settings)
        let operationsPort = try Self.operationsPort(Self.opsPort.resolve(opsPort, in: settings))
        let listenerNice = try overload.listenerPriority(settings)
        var connectionLimits = try overload.connections(settings)
        connectionLimits.uncappedPeers = ClientAddresses(trustedProxies: limits.trustedProxies)
        let buyerAuthentication = try await buyerPasses.authentication(
            settings, dataDirectory: store.postgresURL(settings) == nil ? dataDirectory : nil, logger: logger)
        let (opened, storeDescription) = try await store.open(settings, logger: logger)
        let (provider, webhookSecret, providerHTTP) = try payments.resolve(settings, traced: tracer != nil, logger: logger)
        let engine = Engine(
            store: opened,
            configuration: EngineConfiguration(
                batchWindow: .microseconds(windowMicros), batchLingerBelow: lingerBelow, maxBatchSize: maxBatch,
                refusalMemoryPerSale: refusalMemory, gateIdleTimeout: .seconds(gateIdleSeconds),
                jobs: JobRunnerConfiguration(
                    workers: jobWorkers, lease: .seconds(jobLease), gather: .milliseconds(jobGather)), writePath: writePath,
                reconcileEvery: reconcileMinutes > 0 ? .seconds(reconcileMinutes * 60) : nil, paymentCreation: paymentCreation),
            logger: logger, provider: provider)
        if reconcileMinutes > 0 {
            guard provider != nil else { throw ValidationError("--reconcile-every-minutes needs --provider-url") }
            try await engine.scheduleReconciliation()
        }
        let started = StartedFlag()
        let loops = try await Self.listenerLoops(nice: listenerNice.steps, explicit: listenerNice.explicit, logger: logger)
        let lag = LagMonitor(group: loops)
        // One limiter and one set of risk rules for the order routes and the channel, which refuses
        // what it can tell the route would.
        let limiter = RateLimiter(limits: limits, clock: SystemClock())
        let risk = RiskGate(engine: engine, clock: SystemClock(), trackedKeys: limits.trackedKeys)
        let router = CrestHTTPServer.router(
            engine: engine, adminToken: token.secret, buyerAuthentication: buyerAuthentication, admission: limits,
            shedding: shedding, lag: lag, metrics: registry,
            providerWebhookSecret: webhookSecret, tracing: tracer != nil, limiter: limiter, risk: risk)
        let app = Application(
            router: router,
            server: CrestHTTPServer.server(
                limits: connectionLimits, writePath: engine.writePath,
                admission: ChannelAdmission(
                    limiter: limiter, buyers: buyerAuthentication, engine: engine, risk: risk, placesOrders: tracer == nil)),
            configuration: .init(
                address: .hostname(host, port: port), serverName: CrestHTTPServer.serverName, backlog: connectionLimits.backlog),
            onServerRunning: CrestHTTPServer.whenListening { channel in
                started.raise()
                let bound = channel.localAddress?.port ?? port
                Console.say("crest listening on http://\(host):\(bound) (\(storeDescription))")
            },
            eventLoopGroupProvider: .shared(loops), logger: logger)
        let control = operationsPort.map {
            self.operations(router, host: host, port: $0, limits: connectionLimits, logger: logger)
        }
        // Stopped in reverse order: the tracer last, sending the spans of everything before it.
        let services: [any Service] =
            [tracer].compactMap { $0 } + [
                engine.batcherService, engine.jobRunnerService, lag,
                Listener(server: app, address: "\(host):\(port)", started: started),
            ] + [control?.listener].compactMap { $0 }
        var failure: (any Error)?
        do {
            try await ProcessLifecycle.group(services, logger: logger).run()
        } catch {
            failure = error
        }
        do {
            try await opened.close()
        } catch {
            failure = failure ?? error
        }
        // Shut down whatever happened to the store: the client may not be dropped running.
        do {
            try await providerHTTP?.shutdown()
        } catch {
            failure = failure ?? error
        }
        await control?.thread.shutdown()
        if loops !== MultiThreadedEventLoopGroup.singleton { try? await loops.shutdownGracefully() }
        if let failure { throw failure }
        logger.info("crest stopped")
    }
}

extension Serve {
    /// The event loops of `--port`: NIO's shared ones, or with `--listener-nice` above 0 a group
    /// of their own (one per core, as the shared one) whose threads run that many nice steps below
    /// the rest of the process — the shared loops also carry the provider's calls and PostgreSQL's
    /// connections, which are not to be lowered. A nice value the system refuses fails the start
    /// when it was asked for (`explicit`); the default's is said and the shared loops serve.
    static func listenerLoops(nice: Int, explicit: Bool, logger: Logger) async throws -> MultiThreadedEventLoopGroup {
        guard nice > 0 else { return .singleton }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        do {
            let values = try await ThreadPriority.lower(group, by: Int32(nice))
            logger.info(
                "the event loops of --port run below the rest of crest",
                metadata: ["nice": "\(values.map(String.init).joined(separator: ","))", "threads": "\(values.count)"])
        } catch {
            try? await group.shutdownGracefully()
            guard !explicit else { throw error }
            logger.warning(
                "the event loops of --port run at the process's priority: the default --listener-nice could not be set",
                metadata: ["error": "\(error)"])
            return .singleton
        }
        return group
    }
}

extension Serve {
    /// The control plane's listener on `port` (`--ops-port`): the same routes, an event-loop
    /// thread of its own (`thread`, to shut down at exit) and its requests' tasks on it.
    func operations(
        _ router: Router<CrestRequestContext>, host: String, port: Int, limits: ConnectionLimits, logger: Logger
    ) -> (listener: any Service, thread: EventLoopTaskExecutor) {
        let thread = EventLoopTaskExecutor.ownThread()
        let started = StartedFlag()
        let app = Application(
            router: router, server: CrestHTTPServer.server(limits: limits),
            configuration: .init(address: .hostname(host, port: port), serverName: CrestHTTPServer.serverName, backlog: limits.backlog),
            onServerRunning: CrestHTTPServer.whenListening { channel in
                started.raise()
                Console.say("crest operations listening on http://\(host):\(channel.localAddress?.port ?? port)")
            },
            eventLoopGroupProvider: .shared(thread.eventLoop), logger: logger)
        let listener = OperationsListener(app: app, executor: thread, address: "\(host):\(port)", started: started)
        return (listener, thread)
    }

    /// `--ops-port` as a port number; `nil` when not given. Checked before anything starts.
    static func operationsPort(_ text: String?) throws -> Int? {
        guard let text else { return nil }
        guard let port = Int(text), (0...65_535).contains(port) else {
            throw ValidationError("ops port must be 0…65,535 (got \(text))")
        }
        return port
    }

    /// `crest serve`'s integer options, each declared once (help, environment, default, range).
    enum Options {
        static let port = IntSetting(
            name: "port", env: "CREST_PORT", defaultValue: 8080, range: 0...65_535,
            meaning: "Port to listen on; 0 picks a free one")
        static let batchWindow = IntSetting(
            name: "batch window", env: "CREST_BATCH_WINDOW_US",
            defaultValue: Int((EngineConfiguration.servedBatchWindow.seconds * 1_000_000).rounded()), range: 0...1_000_000, unit: " µs",
            meaning:
                "Microseconds the batcher waits for more requests when fewer than --batch-linger-below wait and no batch is being committed (0 by default with --database-url); 0 takes what queued during the previous commit"
        )
        static let batchLingerBelow = IntSetting(
            name: "batch linger below", env: "CREST_BATCH_LINGER_BELOW",
            defaultValue: EngineConfiguration.servedBatchLingerBelow, range: 1...100_000, unit: " requests",
            meaning: "Requests waiting from which a batch starts at once, without its window")
        static let maxBatch = IntSetting(
            name: "max batch", env: "CREST_MAX_BATCH", defaultValue: 256, range: 1...100_000,
            meaning: "Most reservations per store transaction; 1 turns merging off")
        static let refusalMemory = IntSetting(
            name: "refusal memory", env: "CREST_REFUSAL_MEMORY", defaultValue: 1_000_000, range: 0...10_000_000,
            unit: " keys",
            meaning:
                "Refused idempotency keys each sale remembers so that a replay gets the same answer, about 70 bytes each; 0 remembers none")
        static let gateIdle = IntSetting(
            name: "gate idle time", env: "CREST_GATE_IDLE_SECONDS", defaultValue: 600, range: 1...86_400,
            unit: " seconds",
            meaning: "Seconds without an attempt after which a sale's in-memory gate is dropped, and loaded again from the store if asked")
        static let jobWorkers = IntSetting(
            name: "job workers", env: "CREST_JOB_WORKERS", defaultValue: 100, range: 1...1_024,
            meaning: "Jobs run at the same time (order expiry, payment creation and confirmation, webhooks)")
        static let reconcileEvery = IntSetting(
            name: "reconcile every", env: "CREST_RECONCILE_EVERY_MINUTES", defaultValue: 0, range: 0...10_080,
            unit: " minutes",
            meaning:
                "Reconcile with the provider's statement this often, over the last two intervals (one node at a time); 0: only when asked")
        static let jobLease = IntSetting(
            name: "job lease", env: "CREST_JOB_LEASE_SECONDS", defaultValue: 30, range: 1...3_600, unit: " seconds",
            meaning: "Seconds a job's claim lasts without news from its worker; a job whose worker died runs again after it")
        static let jobGather = IntSetting(
            name: "job gathering", env: "CREST_JOB_GATHER_MS",
            defaultValue: Int(JobRunnerConfiguration.servedGather.seconds * 1000), range: 0...1_000, unit: " ms",
            meaning:
                "How late the job runner may claim a job so that jobs due close together are claimed, run and recorded together (about half the CPU of expiries and payment creation at a steady rate); it delays them by up to this much; 0 claims each as soon as it is due"
        )
    }
}
