import ArgumentParser
import AsyncHTTPClient
import CrestCore
import CrestEngine
import CrestHTTP
import CrestPayments
import CrestSimulator
import CrestStore
import CrestTestSupport
import Foundation
import Hummingbird
import Logging
import Prometheus
import ServiceLifecycle

/// Crest and the provider simulator as HTTP servers on loopback in this process, wired to each
/// other: Crest calls the simulator's API, the simulator sends its signed webhooks to Crest. Orders
/// are placed on the engine; only the provider's calls and webhooks use HTTP.
struct PaymentLoop {
    let engine: Engine
    let store: SQLiteStore
    let simulator: PaymentSimulator
    let dispatcher: WebhookDispatcher
    let provider: GuardedProvider
    /// Where the simulator's webhooks go: Crest's provider webhook route.
    let webhookTarget: WebhookDispatcher.Target

    static func run<T: Sendable>(
        faults: SimulatorFaults, configuration: EngineConfiguration = .init(), _ body: (PaymentLoop) async throws -> T
    ) async throws -> T {
        let logger = quietLogger()
        let secret = "bench-webhook-secret"
        let dispatcher = WebhookDispatcher(target: nil, http: .shared, logger: logger)
        let simulator = PaymentSimulator(configuration: .init(publicURL: "http://127.0.0.1", faults: faults), events: dispatcher)
        let simulatorPort = Locked<Int?>(nil)
        let simulatorApp = Application(
            router: SimulatorServer.router(simulator: simulator),
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in simulatorPort.withLock { $0 = channel.localAddress?.port } }, logger: logger)
        return try await withTemporaryStore { store, _ in
            let simulatorGroup = ServiceGroup(services: [dispatcher, simulatorApp], logger: logger)
            return try await withThrowingTaskGroup(of: Void.self) { servers in
                servers.addTask { try await simulatorGroup.run() }
                let simPort = try await port(of: simulatorPort)
                let providerHTTP = HTTPPaymentProvider.makeClient(connections: GuardedProvider.Configuration().maxInFlight)
                let provider = GuardedProvider(
                    HTTPPaymentProvider(http: providerHTTP, baseURL: "http://127.0.0.1:\(simPort)"), logger: logger)
                let engine = Engine(store: store, configuration: configuration, logger: logger, provider: provider)
                let crestPort = Locked<Int?>(nil)
                let crestApp = Application(
                    router: CrestHTTPServer.router(
                        engine: engine, adminToken: "bench", buyerAuthentication: .off,
                        metrics: PrometheusCollectorRegistry(), providerWebhookSecret: secret),
                    configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                    onServerRunning: { channel in crestPort.withLock { $0 = channel.localAddress?.port } },
                    logger: logger)
                let crestGroup = ServiceGroup(
                    services: [engine.batcherService, engine.jobRunnerService, crestApp], logger: logger)
                servers.addTask { try await crestGroup.run() }
                let port = try await port(of: crestPort)
                let target = WebhookDispatcher.Target(url: "http://127.0.0.1:\(port)/v1/webhooks/provider", secret: secret)
                dispatcher.setTarget(target)
                let result = try await body(
                    PaymentLoop(
                        engine: engine, store: store, simulator: simulator, dispatcher: dispatcher, provider: provider,
                        webhookTarget: target))
                await crestGroup.triggerGracefulShutdown()
                await simulatorGroup.triggerGracefulShutdown()
                try await servers.waitForAll()
                try await providerHTTP.shutdown()
                return result
            }
        }
    }

    static func port(of slot: Locked<Int?>) async throws -> Int {
        for _ in 0..<500 {
            if let port = slot.value { return port }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw ArgumentParser.ValidationError("a server did not start")
    }
}
