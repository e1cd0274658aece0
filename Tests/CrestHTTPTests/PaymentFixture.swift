import AsyncHTTPClient
import CrestCore
import CrestEngine
import CrestFixtures
import CrestHTTP
import CrestPayments
import CrestSimulator
import CrestStore
import CrestTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import NIOHTTP1
import Testing

/// Crest and the provider simulator, each a live server on a loopback port of its own, wired to
/// each other: Crest calls the simulator's API, the simulator sends its webhooks to Crest.
struct PaymentFixture: Sendable {
    static let webhookSecret = "whsec-test-secret"

    /// Quick jobs, and a guard that gives up fast and opens fast.
    static let engineConfiguration = EngineConfiguration(
        jobs: JobRunnerConfiguration(
            pollInterval: .milliseconds(100), backoff: Backoff(base: .milliseconds(20), maximum: .milliseconds(200))))
    static let guardConfiguration = GuardedProvider.Configuration(
        timeout: .milliseconds(3000), attempts: 2, retryBase: .milliseconds(10),
        breaker: .init(
            windowSize: 10, minimumCalls: 5, slowCallDuration: .seconds(10), openDuration: .milliseconds(400),
            halfOpenProbes: 1))

    let engine: Engine
    let store: SQLiteStore
    let simulator: PaymentSimulator
    let dispatcher: WebhookDispatcher
    let provider: GuardedProvider
    let crestPort: Int
    let simulatorPort: Int

    static func with<T: Sendable>(
        faults: SimulatorFaults = .init(), guardConfiguration: GuardedProvider.Configuration = guardConfiguration,
        engineConfiguration: EngineConfiguration = engineConfiguration,
        clock: any CrestClock = SystemClock(),
        _ body: @Sendable (PaymentFixture) async throws -> T
    ) async throws -> T {
        let registry = TestMetrics.registry
        let logger = {
            var logger = Logger(label: "crest.test.payments")
            logger.logLevel = .critical
            return logger
        }()
        let dispatcher = WebhookDispatcher(target: nil, http: .shared, logger: logger)
        let simulator = PaymentSimulator(
            configuration: .init(publicURL: "http://127.0.0.1", seed: 7, faults: faults), events: dispatcher)
        let simulatorApp = Application(
            router: SimulatorServer.router(simulator: simulator),
            configuration: .init(address: .hostname("127.0.0.1", port: 0)), services: [dispatcher], logger: logger)
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-pay-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try SQLiteStore(directory: directory)
        let result = try await simulatorApp.test(.live) { simulatorClient in
            let simulatorPort = try #require(simulatorClient.port)
            simulator.setPublicURL("http://127.0.0.1:\(simulatorPort)")
            let providerHTTP = HTTPPaymentProvider.makeClient(connections: guardConfiguration.maxInFlight)
            defer { Task { try? await providerHTTP.shutdown() } }
            let provider = GuardedProvider(
                HTTPPaymentProvider(http: providerHTTP, baseURL: "http://127.0.0.1:\(simulatorPort)"),
                configuration: guardConfiguration, logger: logger)
            let engine = Engine(
                store: store, configuration: engineConfiguration, logger: logger, provider: provider, clock: clock)
            let crestApp = Application(
                router: CrestHTTPServer.router(
                    engine: engine, adminToken: HTTPFixture.adminToken,
                    buyerAuthentication: try await HTTPFixture.passes(clock: clock), metrics: registry,
                    providerWebhookSecret: webhookSecret),
                configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                services: [engine.batcherService, engine.jobRunnerService], logger: logger)
            return try await crestApp.test(.live) { crestClient in
                let crestPort = try #require(crestClient.port)
                dispatcher.setTarget(
                    .init(url: "http://127.0.0.1:\(crestPort)/v1/webhooks/provider", secret: webhookSecret))
                return try await body(
                    PaymentFixture(
                        engine: engine, store: store, simulator: simulator, dispatcher: dispatcher, provider: provider,
                        crestPort: crestPort, simulatorPort: simulatorPort))
            }
        }
        try await store.close()
        return result
    }

    func sale(stock: Int64 = 10, paymentWindowSeconds: Int = 900) async throws -> Sale {
        try await engine.createSale(
            SaleDraft(
                sku: "PHONE", title: "Phone", price: Money(amount: 499_900, currency: Currency("CNY")!), stock: stock,
                paymentWindowSeconds: paymentWindowSeconds))
    }

    func order(_ sale: Sale, buyer: String) async throws -> Order {
        try await engine.placeOrder(OrderRequest(saleID: sale.id, idempotencyKey: "k-\(buyer)", buyer: buyer, quantity: 1))
            .order
    }

    /// Waits until the order satisfies `condition`; fails the test (and returns the last state) if it never does.
    @discardableResult
    func waitFor(
        _ id: OrderID, timeout: Duration = .seconds(60), sourceLocation: SourceLocation = #_sourceLocation,
        _ condition: @escaping (Order) -> Bool
    ) async throws -> Order {
        let reached = try await eventually(timeout: timeout) { condition(try await engine.order(id)) }
        let order = try await engine.order(id)
        #expect(reached, "order \(id) never reached the expected state: \(order)", sourceLocation: sourceLocation)
        return order
    }

    /// The buyer pays (or fails) at the simulator.
    func pay(_ order: Order, outcome: PaymentStatus = .succeeded) async throws {
        let paymentID = try #require(order.payment?.id)
        _ = try simulator.simulate(paymentID, outcome: outcome)
    }

    /// Calls Crest's API with the admin token.
    func admin(_ method: HTTPMethod, _ path: String, json: String? = nil) async throws -> (status: Int, object: [String: Any]) {
        try await call(method, path, json: json, headers: ["Authorization": "Bearer \(HTTPFixture.adminToken)"])
    }

    /// A call's deadline, which only ends a hung call: a full suite on two cores has kept a call that
    /// takes 0.2 s alone (the checkout against a failing provider) over 10 s.
    static let callDeadline: Duration = .seconds(60)

    /// Calls Crest's API with `buyer`'s pass.
    func buyer(_ buyer: String, _ method: HTTPMethod, _ path: String, timeout: Duration = callDeadline) async throws
        -> (status: Int, object: [String: Any])
    {
        try await call(
            method, path, json: nil, headers: ["Authorization": "Bearer \(try await HTTPFixture.pass(for: buyer))"],
            timeout: timeout)
    }

    private func call(
        _ method: HTTPMethod, _ path: String, json: String?, headers: HTTPHeaders, timeout: Duration = callDeadline
    ) async throws -> (status: Int, object: [String: Any]) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(crestPort)\(path)")
        request.method = method
        request.headers = headers
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: json))
        }
        let response = try await HTTPClient.crest.execute(request, timeout: .init(timeout))
        let data = Data(try await response.body.collect(upTo: 1 << 20).readableBytesView)
        return (Int(response.status.code), (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:])
    }

    /// POSTs a raw provider webhook to Crest.
    func postWebhook(_ body: Data, signature: String?) async throws -> (status: Int, type: String?) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(crestPort)/v1/webhooks/provider")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let signature { request.headers.add(name: ProviderAPI.signatureHeader, value: signature) }
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await HTTPClient.crest.execute(request, timeout: .init(Self.callDeadline))
        let data = Data(try await response.body.collect(upTo: 1 << 20).readableBytesView)
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        return (Int(response.status.code), object?["type"] as? String)
    }
}
