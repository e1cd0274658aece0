import AsyncHTTPClient
import CrestCore
import CrestPayments
import Foundation
import NIOCore
import NIOHTTP1

/// The few calls of Crest's API the load test makes besides the load itself: create or read the
/// sale, read orders back, list a sale's orders, pay at the provider. Plain AsyncHTTPClient with
/// JSON — these calls are not on the measured path.
struct CrestAPI: Sendable {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    struct SaleView: Codable, Sendable {
        var id: String
        var perBuyerLimit: Int
        var paymentWindowSeconds: Int
        var stock: StockCounters
    }

    struct PaymentView: Codable, Sendable {
        var id: String
        var status: String
        var payUrl: String?
    }

    struct OrderView: Codable, Sendable {
        var id: String
        var saleId: String
        var buyer: String
        var quantity: Int
        var status: String
        var expiresAt: Date
        var payment: PaymentView?
    }

    private struct OrderPage: Codable {
        var orders: [OrderView]
        var next: String?
    }

    private struct NewSale: Encodable {
        struct Price: Encodable {
            var amount: Int64
            var currency: String
        }
        var sku: String
        var title: String
        var price: Price
        var stock: Int64
        var perBuyerLimit: Int
        var paymentWindowSeconds: Int
    }

    let http: HTTPClient
    let base: String
    let adminToken: String
    /// The buyers' passes, when Crest wants them.
    let passes: BuyerPassBook?

    static func makeClient(connections: Int) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = connections
        configuration.timeout.connect = .seconds(10)
        // An idle connection is dropped before Crest closes it (a new connection without a request
        // after `--header-timeout-seconds`, 10 s by default; a kept-alive one after 60 s): a request
        // handed to a connection the server is closing at that moment gets no answer.
        configuration.connectionPool.idleTimeout = OutboundHTTP.idleTimeout
        // A load generator's requests are not traced: no span per request for the no-op tracer.
        configuration.tracing.tracer = nil
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    func createSale(_ spec: LoadPlan.SaleSpec) async throws -> SaleView {
        let body = NewSale(
            sku: spec.sku, title: spec.title, price: .init(amount: spec.priceMinor, currency: spec.currency),
            stock: spec.stock, perBuyerLimit: spec.perBuyerLimit, paymentWindowSeconds: spec.paymentWindowSeconds)
        return try await call(.POST, "/v1/sales", body: try JSONEncoder().encode(body), admin: true, expect: 201)
            ?? { throw Failure(description: "creating the sale answered 404") }()
    }

    func sale(_ id: String) async throws -> SaleView {
        guard let sale: SaleView = try await call(.GET, "/v1/sales/\(id)") else {
            throw Failure(description: "sale \(id) does not exist")
        }
        return sale
    }

    /// The order, or `nil` when Crest answers 404; with `waitingForPayment`, answered once it has its
    /// payment or changed status, or after that many seconds (`GET /v1/orders/{id}?wait=…`).
    func order(_ id: String, waitingForPayment wait: Int? = nil) async throws -> OrderView? {
        try await call(.GET, "/v1/orders/\(id)" + (wait.map { "?wait=\($0)" } ?? ""), admin: true)
    }

    /// What the checkout (`POST /v1/orders/{id}/payment`) answered.
    enum Checkout: Sendable {
        /// The order with its payment.
        case order(OrderView)
        /// The order cannot be paid (a `409`): the problem's type, e.g. `order-not-pending`.
        case refused(String)
        /// The payment could not be created now (`503`, `429`): ask again after this long.
        case retry(after: Duration)
    }

    /// The order with its payment, created now if Crest had not yet — as a checkout page asks when
    /// its buyer comes to pay.
    func checkout(_ id: String) async throws -> Checkout {
        let path = "/v1/orders/\(id)/payment"
        var request = HTTPClientRequest(url: base + path)
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(adminToken)")
        let (response, bytes) = try await send(request, method: .POST, path: path)
        switch response.status.code {
        case 200:
            return .order(try Self.decoder.decode(OrderView.self, from: Data(bytes.readableBytesView)))
        case 409:
            return .refused(JSONPeek.problemKind(in: bytes) ?? "")
        case 429, 503:
            let wait = response.headers.first(name: "Retry-After").flatMap(Int.init) ?? 1
            return .retry(after: .seconds(min(max(wait, 1), 5)))
        default:
            throw Failure(description: "POST \(path) answered \(response.status.code): \(String(buffer: bytes).prefix(300))")
        }
    }

    /// The orders `ids`, each read by id (`nil` when Crest answers 404), `concurrency` reads at a time.
    func orders(ids: some Sequence<String>, concurrency: Int = 32) async throws -> [String: OrderView?] {
        try await withThrowingTaskGroup(of: (String, OrderView?).self) { group in
            var orders: [String: OrderView?] = [:]
            var iterator = ids.makeIterator()
            for _ in 0..<concurrency {
                guard let id = iterator.next() else { break }
                group.addTask { (id, try await order(id)) }
            }
            while let (id, order) = try await group.next() {
                orders[id] = order
                if let id = iterator.next() { group.addTask { (id, try await self.order(id)) } }
            }
            return orders
        }
    }

    /// Every order of the sale (optionally only those in `status`), following the pages.
    func orders(saleID: String, status: String? = nil) async throws -> [OrderView] {
        var all: [OrderView] = []
        var after: String?
        repeat {
            var path = "/v1/orders?saleId=\(saleID)&limit=200"
            if let status { path += "&status=\(status)" }
            if let after { path += "&after=\(after)" }
            guard let page: OrderPage = try await call(.GET, path, admin: true) else {
                throw Failure(description: "listing orders answered 404")
            }
            all += page.orders
            after = page.next
        } while after != nil
        return all
    }

    /// Whether any order of the sale still awaits payment.
    func hasPendingOrders(saleID: String) async throws -> Bool {
        // The units pending orders hold are the sale's reserved stock: one row read, where a
        // listing of the sale's pending orders reads the sale's orders once they are few (the
        // audit that follows checks that counters and orders agree).
        try await sale(saleID).stock.reserved > 0
    }

    /// What an order attempt sent again with its key says of the first one's fate.
    enum Placement: Sendable, Equatable {
        /// The key's order (created now, or by the first attempt).
        case order(id: String)
        /// Refused (a 4xx other than "in progress"): the key placed no order.
        case refused
        /// 503 or no answer: still unknown.
        case unknown
    }

    /// Whether an answer to an order attempt leaves open whether its key placed an order: a 5xx
    /// (503: the store could not say whether the batch committed), or a 409 because a request with
    /// the same key is still in progress. `problem` is the answer's label, `"409 request-in-progress"`.
    /// A refusal for load (`isRefusedForLoad`) is known: the attempt was not processed.
    static func leavesFateUnknown(status: Int, problem: String) -> Bool {
        (status >= 500 && !isRefusedForLoad(problem)) || problem == "409 request-in-progress"
    }

    /// Whether the answer refused the attempt for load before looking at it — a rate limit (429)
    /// or a full write path or shedding (503 overloaded, 503 shed) — so its key is unused.
    static func isRefusedForLoad(_ problem: String) -> Bool {
        problem.hasPrefix("429 ") || problem == "503 overloaded" || problem == "503 shed"
    }

    /// Places an order, or learns what the key already did (`Idempotency-Key` makes it safe to send again).
    func placeOrder(saleID: String, key: String, buyer: String, quantity: Int, timeout: Duration) async -> Placement {
        var request = HTTPClientRequest(url: base + "/v1/sales/\(saleID)/orders")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Idempotency-Key", value: key)
        if let passes {
            guard let (name, value) = try? passes.header(for: buyer) else { return .unknown }
            request.headers.add(name: name, value: value)
        }
        guard let body = try? JSONEncoder().encode(PlaceOrder(buyer: buyer, quantity: quantity)) else { return .unknown }
        request.body = .bytes(ByteBuffer(bytes: body))
        do {
            let response = try await http.execute(request, timeout: TimeAmount(timeout))
            let bytes = try await response.body.collect(upTo: 1 << 20)
            let status = Int(response.status.code)
            if status == 201 {
                return .order(id: try Self.decoder.decode(OrderView.self, from: Data(bytes.readableBytesView)).id)
            }
            let label = "\(status) \(JSONPeek.problemKind(in: bytes) ?? "")"
            return Self.leavesFateUnknown(status: status, problem: label) || status < 400 ? .unknown : .refused
        } catch {
            return .unknown
        }
    }

    private struct PlaceOrder: Encodable {
        var buyer: String
        var quantity: Int
    }

    /// Plays the buyer paying at the provider's checkout page; true when the provider took it.
    func pay(at payURL: String) async throws -> Bool {
        var request = HTTPClientRequest(url: payURL + (payURL.contains("?") ? "&" : "?") + "outcome=succeeded")
        request.method = .POST
        let response = try await http.execute(request, timeout: .seconds(30))
        _ = try await response.body.collect(upTo: 1 << 20)
        return response.status == .ok
    }

    private func call<T: Decodable>(
        _ method: HTTPMethod, _ path: String, body: Data? = nil, admin: Bool = false, expect: UInt = 200
    ) async throws -> T? {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        if admin { request.headers.add(name: "Authorization", value: "Bearer \(adminToken)") }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        // A read refused for load (429, 503 shed or overloaded: the server did nothing) is asked
        // again after its Retry-After, for a while: the audit after a crowd meets a server still
        // catching up, and an audit that gave up there would report nothing.
        let patience = ContinuousClock.now + Self.readPatience
        var (response, bytes) = try await send(request, method: method, path: path)
        while method == .GET, ContinuousClock.now < patience,
            let problem = Self.problemKind(status: response.status.code, body: bytes), Self.isRefusedForLoad(problem)
        {
            let wait = response.headers.first(name: "Retry-After").flatMap(Int.init) ?? 1
            try await Task.sleep(for: .seconds(min(max(wait, 1), 5)))
            (response, bytes) = try await send(request, method: method, path: path)
        }
        if response.status == .notFound { return nil }
        guard response.status.code == expect else {
            let text = String(buffer: bytes)
            throw Failure(description: "\(method) \(path) answered \(response.status.code): \(text.prefix(300))")
        }
        return try Self.decoder.decode(T.self, from: Data(bytes.readableBytesView))
    }

    /// How long a read refused for load is asked again before the refusal is the answer.
    static let readPatience = Duration.seconds(120)

    /// A read whose connection was lost before its answer (the server closed it as the request
    /// went out: a kept-alive connection's race with the server's idle timeout) is sent once more
    /// on another: a `GET` changes nothing (RFC 9110 §9.2.2).
    private func send(_ request: HTTPClientRequest, method: HTTPMethod, path: String) async throws -> (HTTPClientResponse, ByteBuffer) {
        let exchange = {
            let response = try await http.execute(request, timeout: .seconds(30))
            return (response, try await response.body.collect(upTo: 16 << 20))
        }
        do {
            return method == .GET ? try await OutboundHTTP.retryingLostConnection(exchange) : try await exchange()
        } catch {
            throw Failure(description: "\(method) \(base)\(path) failed: \(error)")
        }
    }

    /// "503 shed" for a problem answer, as `isRefusedForLoad` reads it; nil for a success.
    static func problemKind(status: UInt, body: ByteBuffer) -> String? {
        guard status >= 400 else { return nil }
        return "\(status) \(JSONPeek.problemKind(in: body) ?? "")"
    }

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        let fractional = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        let whole = Date.ISO8601FormatStyle()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            guard let date = (try? Date(text, strategy: fractional)) ?? (try? Date(text, strategy: whole)) else {
                throw DecodingError.dataCorrupted(
                    .init(codingPath: decoder.codingPath, debugDescription: "not an RFC 3339 time: \(text)"))
            }
            return date
        }
        return decoder
    }()
}
