import ArgumentParser
import CrestEngine
import CrestHTTP
import Foundation

/// `crest serve`'s protection against a crowd too big: the adaptive limit of the write path,
/// shedding of minor routes, and the limits on connections and slow clients.
struct OverloadOptions: ParsableArguments {
    @Option(help: Self.writePathLimit.help) var writePathLimit: Int?
    @Option(help: Self.writePathMin.help) var writePathMin: Int?
    @Option(help: Self.writePathMax.help) var writePathMax: Int?
    @Option(help: Self.writePathQueue.help) var writePathQueue: Int?
    @Option(help: Self.writePathWait.help) var writePathWaitMs: Int?
    @Option(help: Self.writePathTarget.help) var writePathTargetMs: Int?
    @Option(help: Self.shedLag.help) var shedLagMs: Int?
    @Option(help: Self.maxConnections.help) var maxConnections: Int?
    @Option(help: Self.listenBacklog.help) var listenBacklog: Int?
    @Option(help: Self.maxConnectionsPerAddress.help) var maxConnectionsPerAddress: Int?
    @Option(help: Self.headerTimeout.help) var headerTimeoutSeconds: Int?
    @Option(help: Self.bodyTimeout.help) var bodyTimeoutSeconds: Int?
    @Option(help: Self.idleTimeout.help) var idleTimeoutSeconds: Int?
    @Option(help: Self.listenerNice.help) var listenerNice: Int?

    static let writePathLimit = IntSetting(
        name: "write path limit", env: "CREST_WRITE_PATH_LIMIT", defaultValue: 256, range: 0...100_000,
        meaning:
            "Order attempts on the write path at once, at start; the limit then follows the commit latency between --write-path-min and --write-path-max. 0 turns the limit off"
    )
    static let writePathMin = IntSetting(
        name: "write path minimum", env: "CREST_WRITE_PATH_MIN", defaultValue: 16, range: 1...100_000,
        meaning: "The lowest the write path's limit goes")
    static let writePathMax = IntSetting(
        name: "write path maximum", env: "CREST_WRITE_PATH_MAX", defaultValue: 4_096, range: 1...100_000,
        meaning: "The highest the write path's limit goes")
    static let writePathQueue = IntSetting(
        name: "write path queue", env: "CREST_WRITE_PATH_QUEUE", defaultValue: 128, range: 0...100_000,
        meaning: "Order attempts that may wait for a place on a full write path; past it, 503 at once")
    static let writePathWait = IntSetting(
        name: "write path wait", env: "CREST_WRITE_PATH_WAIT_MS", defaultValue: 50, range: 0...10_000, unit: " ms",
        meaning: "How long an order attempt waits for a place on a full write path before 503; 0 refuses at once")
    static let writePathTarget = IntSetting(
        name: "write path target", env: "CREST_WRITE_PATH_TARGET_MS", defaultValue: 20, range: 1...60_000,
        unit: " ms",
        meaning:
            "Latency of a reservation (its wait for a batch and the commit) the write path aims under: past 1.5× it the limit falls. Set it above the store's own commit time"
    )
    static let shedLag = IntSetting(
        name: "shed lag", env: "CREST_SHED_LAG_MS", defaultValue: 50, range: 0...60_000, unit: " ms",
        meaning:
            "Event-loop or task-pool lag past which lists, histories and pages are refused (503 shed), and past twice which reads of one order or sale are too; they are also refused while the write path is full. 0 turns shedding off"
    )
    static let maxConnections = IntSetting(
        name: "max connections", env: "CREST_MAX_CONNECTIONS", defaultValue: 10_000, range: 1...1_000_000,
        meaning: "Connections open at once; more are closed as soon as they are accepted")
    static let maxConnectionsPerAddress = IntSetting(
        name: "max connections per address", env: "CREST_MAX_CONNECTIONS_PER_ADDRESS", defaultValue: 0,
        range: 0...1_000_000,
        meaning:
            "Connections one client address may hold open at once; more are closed as soon as they are accepted. --trusted-proxies are not capped. 0: no cap (clients behind one NAT share an address)"
    )
    static let listenBacklog = IntSetting(
        name: "listen backlog", env: "CREST_LISTEN_BACKLOG", defaultValue: 4_096, range: 1...65_535,
        meaning:
            "Connections the kernel completes and holds until Crest accepts them (a crowd arriving at once); past it their handshakes are dropped and retried a second or more later. The kernel caps it at net.core.somaxconn"
    )
    static let headerTimeout = IntSetting(
        name: "header timeout", env: "CREST_HEADER_TIMEOUT_SECONDS", defaultValue: 10, range: 1...3_600, unit: " seconds",
        meaning: "Time a new connection has to send its first request's line and headers")
    static let bodyTimeout = IntSetting(
        name: "body timeout", env: "CREST_BODY_TIMEOUT_SECONDS", defaultValue: 30, range: 1...3_600, unit: " seconds",
        meaning: "Time a request has from its headers to the end of its body")
    static let idleTimeout = IntSetting(
        name: "idle timeout", env: "CREST_IDLE_TIMEOUT_SECONDS", defaultValue: 60, range: 1...86_400, unit: " seconds",
        meaning: "Time a kept-alive connection may wait for its next request")

    static let listenerNice = IntSetting(
        name: "listener nice", env: "CREST_LISTENER_NICE", defaultValue: 5, range: 0...19,
        meaning:
            "Nice steps (Linux) by which the event loops of --port run below the rest of Crest: under a crowd, reading and refusing its requests yields the cores to the admitted orders, the store's writer, jobs and --ops-port, and refusals come later. 0: all alike"
    )

    /// `--listener-nice` as given, or its default: `explicit` says which (a default that the
    /// system refuses is not worth failing the start for).
    func listenerPriority(_ settings: Settings) throws -> (steps: Int, explicit: Bool) {
        let explicit = listenerNice != nil || settings.optional(nil, env: Self.listenerNice.env) != nil
        return (try Self.listenerNice.resolve(listenerNice, in: settings), explicit)
    }

    /// The write path's limit; `nil` when turned off. Throws a usage error naming what is wrong.
    func writePath(_ settings: Settings) throws -> WritePathLimitConfiguration? {
        let initial = try Self.writePathLimit.resolve(writePathLimit, in: settings)
        guard initial > 0 else { return nil }
        var configuration = WritePathLimitConfiguration()
        configuration.initial = initial
        configuration.minimum = try Self.writePathMin.resolve(writePathMin, in: settings)
        configuration.maximum = try Self.writePathMax.resolve(writePathMax, in: settings)
        configuration.queueCapacity = try Self.writePathQueue.resolve(writePathQueue, in: settings)
        configuration.queueTimeout = .milliseconds(try Self.writePathWait.resolve(writePathWaitMs, in: settings))
        configuration.targetLatency = .milliseconds(try Self.writePathTarget.resolve(writePathTargetMs, in: settings))
        let problems = configuration.problems
        guard problems.isEmpty else {
            throw ValidationError("the write path's limit: \(problems.joined(separator: "; "))")
        }
        return configuration
    }

    /// When minor routes give way; `nil` when turned off.
    func shedding(_ settings: Settings) throws -> SheddingConfiguration? {
        let lag = try Self.shedLag.resolve(shedLagMs, in: settings)
        guard lag > 0 else { return nil }
        var configuration = SheddingConfiguration()
        configuration.lagThreshold = .milliseconds(lag)
        return configuration
    }

    func connections(_ settings: Settings) throws -> ConnectionLimits {
        var limits = ConnectionLimits()
        limits.maxConnections = try Self.maxConnections.resolve(maxConnections, in: settings)
        limits.backlog = try Self.listenBacklog.resolve(listenBacklog, in: settings)
        limits.maxConnectionsPerAddress = try Self.maxConnectionsPerAddress.resolve(maxConnectionsPerAddress, in: settings)
        limits.headerTimeout = .seconds(try Self.headerTimeout.resolve(headerTimeoutSeconds, in: settings))
        limits.bodyTimeout = .seconds(try Self.bodyTimeout.resolve(bodyTimeoutSeconds, in: settings))
        limits.idleTimeout = .seconds(try Self.idleTimeout.resolve(idleTimeoutSeconds, in: settings))
        return limits
    }
}
