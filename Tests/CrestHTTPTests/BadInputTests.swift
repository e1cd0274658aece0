import CrestHTTP
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOPosix
import Testing

@Suite("Bad input gets a 4xx problem, never a 5xx")
struct BadInputTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var key: String?
        var body: String
        var status: HTTPResponse.Status
        var kind: String
        /// Sent by a buyer with a pass; `false`: to a Crest with `--buyer-auth off`, where the body's
        /// buyer is the buyer and its rules apply to it.
        var withPass = true
        var testDescription: String { name }
    }

    static let orderCases: [Case] = [
        Case(name: "malformed JSON", key: "k", body: #"{"buyer": "ana", "quantity": 1"#, status: .badRequest, kind: "invalid-body"),
        Case(name: "not an object", key: "k", body: #"[1, 2]"#, status: .badRequest, kind: "invalid-body"),
        Case(name: "empty body", key: "k", body: "", status: .badRequest, kind: "invalid-body"),
        Case(name: "quantity as string", key: "k", body: #"{"buyer": "ana", "quantity": "1"}"#, status: .badRequest, kind: "invalid-body"),
        Case(name: "buyer as number", key: "k", body: #"{"buyer": 7, "quantity": 1}"#, status: .badRequest, kind: "invalid-body"),
        Case(
            name: "missing buyer", key: "k", body: #"{"quantity": 1}"#, status: .badRequest, kind: "invalid-request",
            withPass: false),
        Case(name: "null quantity", key: "k", body: #"{"buyer": "ana", "quantity": null}"#, status: .badRequest, kind: "invalid-body"),
        Case(name: "zero quantity", key: "k", body: #"{"buyer": "ana", "quantity": 0}"#, status: .badRequest, kind: "invalid-request"),
        Case(name: "negative quantity", key: "k", body: #"{"buyer": "ana", "quantity": -3}"#, status: .badRequest, kind: "invalid-request"),
        Case(
            name: "quantity above the limit", key: "k", body: #"{"buyer": "ana", "quantity": 3}"#, status: .badRequest,
            kind: "invalid-request"),
        Case(
            name: "huge quantity", key: "k", body: #"{"buyer": "ana", "quantity": 99999999999999999999999}"#, status: .badRequest,
            kind: "invalid-body"),
        Case(name: "fractional quantity", key: "k", body: #"{"buyer": "ana", "quantity": 1.5}"#, status: .badRequest, kind: "invalid-body"),
        Case(
            name: "empty buyer", key: "k", body: #"{"buyer": "", "quantity": 1}"#, status: .badRequest, kind: "invalid-request",
            withPass: false),
        Case(
            name: "overlong buyer", key: "k", body: #"{"buyer": "\#(String(repeating: "b", count: 129))", "quantity": 1}"#,
            status: .badRequest, kind: "invalid-request", withPass: false),
        Case(
            name: "control characters in buyer", key: "k", body: #"{"buyer": "a\u0000b", "quantity": 1}"#, status: .badRequest,
            kind: "invalid-request", withPass: false),
        Case(
            name: "missing idempotency key", key: nil, body: #"{"buyer": "ana", "quantity": 1}"#, status: .badRequest,
            kind: "invalid-request"),
        Case(
            name: "overlong idempotency key", key: String(repeating: "k", count: 256), body: #"{"buyer": "ana", "quantity": 1}"#,
            status: .badRequest, kind: "invalid-request"),
    ]

    @Test("order requests", arguments: orderCases)
    func badOrderRequests(_ testCase: Case) async throws {
        try await HTTPFixture.with(buyerAuthentication: testCase.withPass ? nil : .off) { fixture in
            try await fixture.app.test(.router) { client in
                let sale = try await client.createSale(perBuyerLimit: 2)
                let response = try await client.placeOrder(
                    sale: sale, key: testCase.key, body: ByteBuffer(string: testCase.body),
                    as: testCase.withPass ? "ana" : nil)
                response.expectProblem(testCase.status, testCase.kind)
                try await client.execute(uri: "/v1/sales/\(sale)", method: .get) { response in
                    #expect((response.object["stock"] as? [String: Int])?["reserved"] == 0, "no stock moved")
                }
            }
        }
    }

    @Test("unknown sales, orders and routes are 404 problems")
    func unknownThings() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let unknown = "01a2102d-fd74-73b6-a446-ddb6139ee44b"
                try await client.placeOrder(sale: unknown, key: "k", buyer: "ana").expectProblem(.notFound, "sale-not-found")
                try await client.placeOrder(sale: "not-a-uuid", key: "k", buyer: "ana").expectProblem(.notFound, "sale-not-found")
                try await client.execute(uri: "/v1/sales/\(unknown)", method: .get) { $0.expectProblem(.notFound, "sale-not-found") }
                let ana = try await HTTPFixture.buyerHeaders("ana")
                try await client.execute(uri: "/v1/orders/\(unknown)", method: .get, headers: ana) {
                    $0.expectProblem(.notFound, "order-not-found")
                }
                try await client.execute(uri: "/v1/orders/nope/cancel", method: .post, headers: ana) {
                    $0.expectProblem(.notFound, "order-not-found")
                }
                try await client.execute(uri: "/v2/anything", method: .get) { $0.expectProblem(.notFound, "not-found") }
            }
        }
    }

    @Test("a known path with a method it does not take is 405 with Allow; an unknown path stays 404")
    func wrongMethods() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let sale = "01a2102d-fd74-73b6-a446-ddb6139ee44b"
                for (method, path, allowed) in [
                    (HTTPRequest.Method.put, "/v1/sales", "GET, POST"),
                    (.delete, "/v1/sales/\(sale)", "GET, PATCH"),
                    (.get, "/v1/sales/\(sale)/orders", "POST"),
                    (.patch, "/v1/webhooks/provider", "POST"),
                    (.post, "/healthz", "GET"),
                ] {
                    try await client.execute(uri: path, method: method) { response in
                        response.expectProblem(.methodNotAllowed, "method-not-allowed")
                        #expect(response.headers[.allow] == allowed, "\(method) \(path)")
                    }
                }
                try await client.execute(uri: "/v1/sales/\(sale)/nothing", method: .delete) {
                    $0.expectProblem(.notFound, "not-found")
                    #expect($0.headers[.allow] == nil)
                }
            }
        }
    }

    @Test("admin routes need the right bearer token")
    func adminToken() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                for headers: HTTPFields in [
                    [:], [.authorization: "Bearer wrong"], [.authorization: "Basic dGVzdA=="],
                    [.authorization: "Bearer \(HTTPFixture.adminToken)x"], [.authorization: "Bearer "],
                ] {
                    try await client.execute(uri: "/v1/sales", method: .post, headers: headers, body: HTTPFixture.saleBody()) {
                        $0.expectProblem(.unauthorized, "unauthorized")
                        #expect($0.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
                    }
                    try await client.execute(uri: "/v1/sales", method: .get, headers: headers) {
                        $0.expectProblem(.unauthorized, "unauthorized")
                    }
                }
                try await client.execute(uri: "/v1/sales", method: .get, headers: HTTPFixture.adminHeaders) {
                    #expect($0.status == .ok)
                }
            }
        }
    }

    @Test("sale creation checks every field")
    func badSales() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let bad: [[String: Any]] = [
                    ["stock": 0], ["stock": 1_000_000_001], ["stock": -1], ["perBuyerLimit": 0],
                    ["sku": ""], ["title": String(repeating: "t", count: 201)],
                    ["price": ["amount": -1, "currency": "CNY"]], ["paymentWindowSeconds": 0],
                    ["endsAt": "2020-01-01T00:00:00Z"],
                ]
                for fields in bad {
                    try await client.execute(
                        uri: "/v1/sales", method: .post, headers: HTTPFixture.adminHeaders,
                        body: HTTPFixture.saleBody(extra: fields)
                    ) { $0.expectProblem(.badRequest, "invalid-request") }
                }
                let badShape: [[String: Any]] = [
                    ["price": ["amount": 100, "currency": "yuan"]], ["startsAt": "tomorrow"], ["stock": "ten"],
                ]
                for fields in badShape {
                    try await client.execute(
                        uri: "/v1/sales", method: .post, headers: HTTPFixture.adminHeaders,
                        body: HTTPFixture.saleBody(extra: fields)
                    ) { $0.expectProblem(.badRequest, "invalid-body") }
                }
                try await client.execute(uri: "/v1/sales?limit=0", method: .get, headers: HTTPFixture.adminHeaders) {
                    $0.expectProblem(.badRequest, "invalid-request")
                }
            }
        }
    }

    @Test("bodies over 64 KiB are 413")
    func oversizedBody() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let sale = try await client.createSale()
                let huge = #"{"buyer": "ana", "quantity": 1, "pad": "\#(String(repeating: "x", count: 70_000))"}"#
                try await client.placeOrder(sale: sale, key: "k", body: ByteBuffer(string: huge))
                    .expectProblem(.contentTooLarge, "payload-too-large")
            }
        }
    }

    /// Hummingbird hands the body's framing errors to the handler that reads it; unmapped,
    /// they were a logged 500.
    @Test("a body that breaks HTTP framing (a bad chunk size) is 400, not 500")
    func brokenChunkedBody() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.live) { client in
                let sale = try await client.createSale()
                let pass = try await HTTPFixture.pass(for: "ana")
                let answer = try await Self.rawExchange(
                    port: try #require(client.port),
                    """
                    POST /v1/sales/\(sale)/orders HTTP/1.1\r
                    Host: 127.0.0.1\r
                    Authorization: Bearer \(pass)\r
                    Idempotency-Key: k\r
                    Content-Type: application/json\r
                    Transfer-Encoding: chunked\r
                    \r
                    zz\r
                    {}\r
                    0\r
                    \r

                    """)
                #expect(answer.hasPrefix("HTTP/1.1 400 "), "\(answer)")
                #expect(answer.contains("application/problem+json"))
                #expect(answer.contains("urn:crest:problem:malformed-request"))
            }
        }
    }

    /// Writes `request` as is on a new connection and returns what the server answers until it
    /// closes the connection or 5 s pass.
    static func rawExchange(port: Int, _ request: String) async throws -> String {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: request))
            var answer = ""
            let deadline = ContinuousClock.now + .seconds(5)
            for try await part in inbound {
                answer += String(buffer: part)
                if answer.contains("\r\n\r\n") && answer.hasSuffix("}") || ContinuousClock.now > deadline { break }
            }
            return answer
        }
    }
}
