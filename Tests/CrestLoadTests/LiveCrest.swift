import CrestCore
import CrestEngine
import CrestFixtures
import CrestHTTP
import CrestIdentity
import CrestLoad
import CrestStore
import CrestTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

/// Crest in this process, a live server on a free loopback port, on a store the test may falsify.
enum LiveCrest {
    static let adminToken = "loadtest-admin-token"
    /// The shop's HS256 secret: Crest verifies the crowd's passes with it, the load test mints them.
    static let buyerPassSecret = "loadtest-buyer-pass-secret-0123456789"

    static func with<T: Sendable>(
        store makeStore: @escaping @Sendable (URL) throws -> any Store = { try SQLiteStore(directory: $0) },
        admission: AdmissionLimits = AdmissionLimits(),
        _ body: @Sendable (_ url: String) async throws -> T
    ) async throws -> T {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-load-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try makeStore(directory)
        var logger = Logger(label: "crest.test.load")
        logger.logLevel = .critical
        let registry = TestMetrics.registry
        let engine = Engine(store: store, logger: logger)
        let app = Application(
            router: CrestHTTPServer.router(
                engine: engine, adminToken: adminToken,
                buyerAuthentication: .passes(
                    BuyerPassVerifier(
                        keys: try await BuyerPassKeys.make(secrets: [buyerPassSecret], jwks: nil), clock: SystemClock())),
                admission: admission, metrics: registry),
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            services: [engine.batcherService, engine.jobRunnerService], logger: logger)
        let result = try await app.test(.live) { client in
            try await body("http://127.0.0.1:\(try #require(client.port))")
        }
        try await store.close()
        return result
    }

    /// The same on a test double made for the run's directory; `body` gets the double too, and
    /// it is returned with the result for what the test checks afterwards.
    static func with<S: Store, T: Sendable>(
        double makeStore: @escaping @Sendable (URL) throws -> S,
        _ body: @Sendable (_ url: String, _ store: S) async throws -> T
    ) async throws -> (result: T, store: S) {
        let made = Locked<S?>(nil)
        let result = try await with(store: { directory in
            let store = try makeStore(directory)
            made.withLock { $0 = store }
            return store
        }) { url in
            try await body(url, try #require(made.value))
        }
        return (result, try #require(made.value))
    }

    /// A plan against `url` that creates a sale of `stock` units, one per buyer.
    static func plan(_ url: String, stock: Int64, requests: Int, buyers: Int) -> LoadPlan {
        var plan = LoadPlan(url: url, adminToken: adminToken)
        plan.buyerPassSecret = buyerPassSecret
        plan.sale.stock = stock
        plan.requests = requests
        plan.buyers = buyers
        plan.pace = .closed(concurrency: 16)
        return plan
    }
}

extension LoadReport {
    func check(_ name: String) -> Check? { checks.first { $0.name == name } }
}
