import ArgumentParser
import AsyncHTTPClient
import CrestEngine
import CrestHTTP
import CrestStore
import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
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

    @Option(help: "Address to listen on [env: CREST_HOST] (default: 127.0.0.1)")
    var host: String?

    @Option(help: "Port to listen on; 0 picks a free one [env: CREST_PORT] (default: 8080)")
    var port: Int?

    @OptionGroup var store: StoreOptions

    @OptionGroup var payments: ProviderOptions

    @Option(help: "Bearer token for admin routes [env: CREST_ADMIN_TOKEN] (default: generated once, kept in the data directory)")
    var adminToken: String?

    @Option(help: "Microseconds the batcher waits for more requests after the first [env: CREST_BATCH_WINDOW_US] (default: 0)")
    var batchWindowUs: Int?

    @Option(help: "Most reservations per store transaction; 1 turns merging off [env: CREST_MAX_BATCH] (default: 512)")
    var maxBatch: Int?

    @Option(help: "Refused idempotency keys each sale remembers so that a replay gets the same answer, about 70 bytes each; 0 remembers none [env: CREST_REFUSAL_MEMORY] (default: 1000000)")
    var refusalMemory: Int?

    @Option(help: "Seconds without an attempt after which a sale's in-memory gate is dropped, and loaded again from the store if asked [env: CREST_GATE_IDLE_SECONDS] (default: 600)")
    var gateIdleSeconds: Int?

    @Option(help: "Jobs run at the same time (order expiry, payment confirmation) [env: CREST_JOB_WORKERS] (default: 100)")
    var jobWorkers: Int?

    @Option(help: "Seconds a job's claim lasts without news from its worker; a job whose worker died runs again after it [env: CREST_JOB_LEASE_SECONDS] (default: 30)")
    var jobLeaseSeconds: Int?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical [env: CREST_LOG_LEVEL] (default: info)")
    var logLevel: String?

    @Option(help: "Base URL of an OpenTelemetry collector's OTLP/HTTP receiver; spans are posted to <URL>/v1/traces. The OTEL_* variables of the OpenTelemetry SDK apply too [env: CREST_OTLP_ENDPOINT] (default: none, no traces exported)")
    var otlpEndpoint: String?

    func run() async throws {
        let settings = Settings()
        let host = try settings.value(host, env: "CREST_HOST", default: "127.0.0.1")
        let port = try settings.value(port, env: "CREST_PORT", default: 8080)
        let dataDirectory = try store.directory(settings)
        let windowMicros = try settings.value(batchWindowUs, env: "CREST_BATCH_WINDOW_US", default: 0)
        let maxBatch = try settings.value(maxBatch, env: "CREST_MAX_BATCH", default: 512)
        let refusalMemory = try settings.value(refusalMemory, env: "CREST_REFUSAL_MEMORY", default: 1_000_000)
        let gateIdleSeconds = try settings.value(gateIdleSeconds, env: "CREST_GATE_IDLE_SECONDS", default: 600)
        let jobWorkers = try settings.value(jobWorkers, env: "CREST_JOB_WORKERS", default: 100)
        let jobLease = try settings.value(jobLeaseSeconds, env: "CREST_JOB_LEASE_SECONDS", default: 30)
        let levelName = try settings.value(logLevel, env: "CREST_LOG_LEVEL", default: "info")
        guard (0...65535).contains(port) else { throw ValidationError("port must be 0…65535") }
        guard windowMicros >= 0, windowMicros <= 1_000_000 else {
            throw ValidationError("batch window must be 0…1,000,000 µs")
        }
        guard maxBatch >= 1, maxBatch <= 100_000 else { throw ValidationError("max batch must be 1…100,000") }
        guard (0...10_000_000).contains(refusalMemory) else {
            throw ValidationError("refusal memory must be 0…10,000,000 keys")
        }
        guard (1...86_400).contains(gateIdleSeconds) else {
            throw ValidationError("gate idle time must be 1…86,400 seconds")
        }
        guard (1...1024).contains(jobWorkers) else { throw ValidationError("job workers must be 1…1,024") }
        guard (1...3600).contains(jobLease) else { throw ValidationError("job lease must be 1…3,600 seconds") }
        let tracing = try TracingSettings(
            endpoint: settings.optional(otlpEndpoint, env: "CREST_OTLP_ENDPOINT"),
            environment: ProcessInfo.processInfo.environment)

        try Console.bootstrapLogging(
            level: levelName, metadataProvider: tracing.enabled ? OTel.makeLoggingMetadataProvider() : nil)
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

        let givenToken = settings.optional(adminToken, env: "CREST_ADMIN_TOKEN")
        if store.postgresURL(settings) != nil, givenToken == nil {
            throw ValidationError("with --database-url, give --admin-token (or CREST_ADMIN_TOKEN): every node must share it")
        }
        if store.postgresURL(settings) == nil { try StoreOptions.prepare(dataDirectory) }
        let token = try AdminToken.resolve(given: givenToken, dataDirectory: dataDirectory)
        if token.generated {
            // Said now, not once listening: a start-up that fails later has still written it.
            Console.say("admin token (generated, kept in \(dataDirectory.appending(path: AdminToken.fileName).path)): \(token.token)")
        }
        let (opened, storeDescription) = try await store.open(settings, logger: logger)
        let (provider, webhookSecret, providerHTTP) = try payments.resolve(settings, logger: logger)
        let engine = Engine(
            store: opened,
            configuration: EngineConfiguration(
                batchWindow: .microseconds(windowMicros), maxBatchSize: maxBatch,
                refusalMemoryPerSale: refusalMemory, gateIdleTimeout: .seconds(gateIdleSeconds),
                jobs: JobRunnerConfiguration(workers: jobWorkers, lease: .seconds(jobLease))),
            logger: logger, provider: provider)
        let started = StartedFlag()
        let app = Application(
            router: CrestHTTPServer.router(
                engine: engine, adminToken: token.token, metrics: registry, providerWebhookSecret: webhookSecret),
            configuration: .init(address: .hostname(host, port: port), serverName: "crest"),
            onServerRunning: { channel in
                started.raise()
                let bound = channel.localAddress?.port ?? port
                Console.say("crest listening on http://\(host):\(bound) (\(storeDescription))")
            },
            logger: logger)
        // Stopped in reverse order: the tracer last, sending the spans of everything before it.
        let services: [any Service] = [tracer].compactMap { $0 } + [
            engine.batcherService, engine.jobRunnerService,
            Listener(server: app, address: "\(host):\(port)", started: started),
        ]
        do {
            try await ProcessLifecycle.group(services, logger: logger).run()
        } catch {
            try? await opened.close()
            try? await providerHTTP?.shutdown()
            throw error
        }
        try await opened.close()
        try await providerHTTP?.shutdown()
        logger.info("crest stopped")
    }
}
