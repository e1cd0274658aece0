import AsyncHTTPClient
import CrestIdentity
import CrestTestSupport
import Foundation
import NIOCore
import NIOHTTP1

/// A small JSON client for one Crest process.
struct CrestClient: Sendable {
    struct Answer: Sendable {
        var status: Int
        var headers: HTTPHeaders
        /// `id` of the body, if any.
        var id: String?
        /// `type` of a problem body, if any.
        var problemType: String?
        /// `stock` of a sale body, if any.
        var stock: [String: Int]?
        var body: Data

        /// The body as a JSON object (empty for anything else).
        var json: [String: Any] {
            (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
        }
    }

    let http: HTTPClient
    let port: Int

    /// The admin token's header, for operators' reads.
    static let admin = [("Authorization", "Bearer \(CrestProcess.adminToken)")]

    /// The `Authorization` header with a pass for `buyer`, signed with the secret every test
    /// process is started with (`CrestProcess.buyerPassSecret`).
    static func passHeader(for buyer: String) async throws -> (String, String) {
        let pass = try BuyerPassSigner(secret: CrestProcess.buyerPassSecret).sign(
            BuyerPass(buyer: buyer, expiresAt: Date() + 3600, issuedAt: Date()))
        return ("Authorization", "Bearer \(pass)")
    }

    func call(
        _ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], json: String? = nil,
        timeout: TimeAmount = .seconds(30)
    ) async throws -> Answer {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: json))
        }
        let response = try await http.execute(request, timeout: timeout)
        let body = try await response.body.collect(upTo: 1 << 20)
        let data = Data(body.readableBytesView)
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        return Answer(
            status: Int(response.status.code), headers: response.headers, id: object["id"] as? String,
            problemType: object["type"] as? String, stock: object["stock"] as? [String: Int], body: data)
    }

    func createSale(stock: Int, adminToken: String, paymentWindowSeconds: Int = 900) async throws -> String {
        let answer = try await call(
            .POST, "/v1/sales", headers: [("Authorization", "Bearer \(adminToken)")],
            json: #"""
                {"sku":"E2E","title":"Crash test","price":{"amount":100,"currency":"CNY"},"stock":\#(stock),
                 "paymentWindowSeconds":\#(paymentWindowSeconds)}
                """#)
        guard answer.status == 201, let id = answer.id else {
            throw CrestClientError(message: "sale not created: \(answer.status) \(answer.problemType ?? "")")
        }
        return id
    }

    func order(sale: String, key: String, buyer: String, timeout: TimeAmount = .seconds(30)) async throws -> Answer {
        try await call(
            .POST, "/v1/sales/\(sale)/orders", headers: [("Idempotency-Key", key), try await Self.passHeader(for: buyer)],
            json: #"{"buyer":"\#(buyer)","quantity":1}"#, timeout: timeout)
    }

    /// Places an order as a patient buyer would: the same key resent after a `503` or `429` (waiting
    /// its `Retry-After`, at most a second) or a lost connection, until another answer or `deadline`.
    /// The last answer is returned; a transport error past the deadline is thrown.
    func orderResending(sale: String, key: String, buyer: String, deadline: Duration = .seconds(60)) async throws -> Answer {
        let end = ContinuousClock.now + deadline
        while true {
            let wait: Duration
            do {
                let answer = try await order(sale: sale, key: key, buyer: buyer)
                guard answer.status == 503 || answer.status == 429, ContinuousClock.now < end else { return answer }
                let seconds = answer.headers.first(name: "Retry-After").flatMap(Int.init) ?? 1
                wait = .milliseconds(min(max(seconds, 0), 1) * 1_000 + 50)
            } catch  where ContinuousClock.now < end {
                wait = .milliseconds(100)
            }
            try await Task.sleep(for: wait)
        }
    }

    /// The id of the order's payment once it has one (read as an operator), or `nil` when it has
    /// none after `timeout`.
    func paymentID(of order: String, timeout: Duration = .seconds(60)) async throws -> String? {
        var paymentID: String?
        _ = try await eventually(timeout: timeout) {
            let order = try await call(.GET, "/v1/orders/\(order)", headers: Self.admin).json
            paymentID = (order["payment"] as? [String: Any])?["id"] as? String
            return paymentID != nil
        }
        return paymentID
    }

    /// `GET /v1/audit`: whether every promise holds on the store's data, and the report if not.
    func audit() async throws -> (passed: Bool, report: String) {
        let answer = try await call(.GET, "/v1/audit", headers: Self.admin, timeout: .seconds(60))
        return (answer.status == 200 && answer.json["passed"] as? Bool == true, String(decoding: answer.body, as: UTF8.self))
    }

    func stock(sale: String) async throws -> [String: Int] {
        try await call(.GET, "/v1/sales/\(sale)").stock ?? [:]
    }
}

struct CrestClientError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
