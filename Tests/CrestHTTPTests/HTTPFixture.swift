import CrestCore
import CrestEngine
import CrestFixtures
import CrestHTTP
import CrestIdentity
import CrestStore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTesting
import Logging
import Metrics
import NIOCore
import Prometheus
import Testing

/// A Crest application on a fresh embedded store, its batcher running as an application service.
/// Buyer routes need buyer passes signed with `buyerPassSecret` (or `buyerAuthentication: .off`).
struct HTTPFixture {
    static let adminToken = "test-admin-token"
    static let buyerPassSecret = "test-buyer-pass-secret-of-32-bytes-or-more"

    let engine: Engine
    let store: SQLiteStore
    let app: Application<RouterResponder<CrestRequestContext>>

    static func with<T: Sendable>(
        buyerAuthentication: BuyerAuthentication? = nil, admission: AdmissionLimits = AdmissionLimits(),
        clock: any CrestClock = SystemClock(), configuration: EngineConfiguration = .init(),
        shedding: SheddingConfiguration? = nil, connections: ConnectionLimits? = nil,
        openConnections: OpenConnections = OpenConnections(), channelRefusals: Bool = false,
        _ body: (HTTPFixture) async throws -> T
    ) async throws -> T {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-http-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try SQLiteStore(directory: directory)
        var logger = Logger(label: "crest.test")
        logger.logLevel = .warning
        // Bootstrap metrics before the engine makes its metric handles, as the executable does.
        let registry = TestMetrics.registry
        let engine = Engine(store: store, configuration: configuration, logger: logger, clock: clock)
        var authentication = buyerAuthentication
        if authentication == nil { authentication = try await passes(clock: clock) }
        // With `channelRefusals`, the channel refuses what it can tell the route would, with the
        // routes' limiter and risk rules.
        let limiter = RateLimiter(limits: admission, clock: clock)
        let risk = RiskGate(engine: engine, clock: clock, trackedKeys: admission.trackedKeys)
        let router = CrestHTTPServer.router(
            engine: engine, adminToken: adminToken, buyerAuthentication: authentication!, admission: admission,
            clock: clock, shedding: shedding, metrics: registry, limiter: limiter, risk: risk)
        let channel =
            channelRefusals
            ? ChannelAdmission(limiter: limiter, buyers: authentication!, engine: engine, risk: risk, placesOrders: true) : nil
        let server: HTTPServerBuilder =
            connections != nil || channel != nil
            ? CrestHTTPServer.server(
                limits: connections ?? Self.patientConnections, connections: openConnections, writePath: engine.writePath,
                admission: channel)
            : .http1()
        let app = Application(
            router: router,
            server: server,
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            services: [engine.batcherService, engine.jobRunnerService], logger: logger)
        let result = try await body(HTTPFixture(engine: engine, store: store, app: app))
        try? await store.close()  // a test may have closed it already
        return result
    }

    /// Connection limits for tests that are not about them: timeouts far beyond any stall of a
    /// loaded machine (CI once held a live test's connection past the default 10 s for headers,
    /// and the server closed it under the test's feet).
    static var patientConnections: ConnectionLimits {
        var limits = ConnectionLimits()
        limits.headerTimeout = .seconds(300)
        limits.bodyTimeout = .seconds(300)
        limits.idleTimeout = .seconds(300)
        return limits
    }

    static var adminHeaders: HTTPFields { [.authorization: "Bearer \(adminToken)", .contentType: "application/json"] }

    /// Verification of passes signed with `buyerPassSecret` (and `extraSecrets`).
    static func passes(clock: any CrestClock = SystemClock(), extraSecrets: [String] = []) async throws
        -> BuyerAuthentication
    {
        let keys = try await BuyerPassKeys.make(secrets: [buyerPassSecret] + extraSecrets, jwks: nil)
        return .passes(BuyerPassVerifier(keys: keys, clock: clock))
    }

    /// A pass for `buyer`, valid for an hour, signed with `buyerPassSecret`. Without an issue time:
    /// tests on a stopped clock sign passes long after the clock stopped, and on a loaded machine
    /// "issued a minute in the future" would refuse them.
    static func pass(for buyer: String, sales: [SaleID]? = nil, perBuyerLimit: Int? = nil) async throws -> String {
        try BuyerPassSigner(secret: buyerPassSecret).sign(
            BuyerPass(buyer: buyer, expiresAt: Date() + 3600, sales: sales, perBuyerLimit: perBuyerLimit))
    }

    /// `Authorization: Bearer <the buyer's pass>` and a JSON content type.
    static func buyerHeaders(_ buyer: String) async throws -> HTTPFields {
        [.authorization: "Bearer \(try await pass(for: buyer))", .contentType: "application/json"]
    }

    static func json(_ object: [String: Any]) -> ByteBuffer {
        ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: object))
    }

    static func saleBody(stock: Int = 10, perBuyerLimit: Int = 1, extra: [String: Any] = [:]) -> ByteBuffer {
        var object: [String: Any] = [
            "sku": "PHONE-1", "title": "Phone", "price": ["amount": 499_900, "currency": "CNY"], "stock": stock,
            "perBuyerLimit": perBuyerLimit,
        ]
        object.merge(extra) { $1 }
        return json(object)
    }
}

extension HTTPFields {
    /// These fields with `name` set to `value`.
    func setting(_ name: HTTPField.Name, _ value: String) -> HTTPFields {
        var fields = self
        fields[name] = value
        return fields
    }
}

extension TestResponse {
    /// The body as a JSON object.
    var object: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
    }

    /// Checks that this is an RFC 9457 problem of `status` and `kind`, as every error must be.
    func expectProblem(_ status: HTTPResponse.Status, _ kind: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(self.status == status, "\(String(buffer: body))", sourceLocation: sourceLocation)
        #expect(headers[.contentType] == "application/problem+json", sourceLocation: sourceLocation)
        #expect(object["type"] as? String == "urn:crest:problem:\(kind)", "\(object)", sourceLocation: sourceLocation)
        #expect(object["status"] as? Int == Int(status.code), sourceLocation: sourceLocation)
        #expect(object["title"] is String, sourceLocation: sourceLocation)
    }
}

extension TestClientProtocol {
    /// Creates a sale through the API and returns its id.
    func createSale(stock: Int = 10, perBuyerLimit: Int = 1, extra: [String: Any] = [:]) async throws -> String {
        try await execute(
            uri: "/v1/sales", method: .post, headers: HTTPFixture.adminHeaders,
            body: HTTPFixture.saleBody(stock: stock, perBuyerLimit: perBuyerLimit, extra: extra)
        ) { response in
            #expect(response.status == .created, "\(String(buffer: response.body))")
            return response.object["id"] as? String ?? ""
        }
    }

    /// Sends an order attempt with `body`, as `buyer` (with the buyer's pass; `nil`: no pass).
    func placeOrder(sale: String, key: String?, body: ByteBuffer, as buyer: String? = "ana") async throws
        -> TestResponse
    {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let buyer { headers[.authorization] = "Bearer \(try await HTTPFixture.pass(for: buyer))" }
        if let key { headers[HTTPField.Name("Idempotency-Key")!] = key }
        return try await execute(uri: "/v1/sales/\(sale)/orders", method: .post, headers: headers, body: body) { $0 }
    }

    func placeOrder(sale: String, key: String, buyer: String, quantity: Int = 1) async throws -> TestResponse {
        try await placeOrder(
            sale: sale, key: key, body: HTTPFixture.json(["buyer": buyer, "quantity": quantity]), as: buyer)
    }
}
