import AsyncHTTPClient
import CrestTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOHTTP1
import Testing

@Suite("A crowd over real HTTP")
struct HTTPCrowdTests {
    struct Answer: Sendable, Equatable {
        var status: Int
        var orderID: String?
        var problemType: String?
    }

    static func order(_ http: HTTPClient, port: Int, sale: String, key: String, buyer: String) async -> Answer {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/sales/\(sale)/orders")
        request.method = .POST
        request.headers.add(name: "Idempotency-Key", value: key)
        request.headers.add(name: "Content-Type", value: "application/json")
        do {
            request.headers.add(name: "Authorization", value: "Bearer \(try await HTTPFixture.pass(for: buyer))")
        } catch {
            return Answer(status: -1, orderID: nil, problemType: "no pass: \(error)")
        }
        request.body = .bytes(ByteBuffer(string: #"{"buyer":"\#(buyer)","quantity":1}"#))
        do {
            // A deadline generous enough for the whole suite on two cores (this test alone takes ~8 s, beside
            // the others up to 150 s): what it checks is exactly-once, not speed.
            let response = try await http.execute(request, timeout: .seconds(120))
            let body = try await response.body.collect(upTo: 1 << 20)
            let object = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any]
            let status = Int(response.status.code)
            return Answer(
                status: status, orderID: status == 201 ? object?["id"] as? String : nil,
                problemType: object?["type"] as? String)
        } catch {
            return Answer(status: -1, orderID: nil, problemType: "\(error)")
        }
    }

    @Test("5,000 requests over 64 connections on 500 units: exactly 500 orders, one per buyer, every key replays")
    func crowdOverHTTP() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.live) { client in
                let port = try #require(client.port)
                let sale = try await client.createSale(stock: 500)
                let http = HTTPClient(
                    eventLoopGroupProvider: .singleton,
                    configuration: .init(
                        connectionPool: .init(idleTimeout: HTTPClient.crestIdleTimeout, concurrentHTTP1ConnectionsPerHostSoftLimit: 64)))
                let requests = 5_000
                let buyers = 3_000
                let answers = await concurrently(requests, width: 64) { index in
                    await Self.order(http, port: port, sale: sale, key: "key-\(index)", buyer: "buyer-\(index % buyers)")
                }
                let replays = await concurrently(requests, width: 64) { index in
                    await Self.order(http, port: port, sale: sale, key: "key-\(index)", buyer: "buyer-\(index % buyers)")
                }
                try await http.shutdown()

                let created = answers.enumerated().filter { $0.element.status == 201 }
                #expect(created.count == 500)
                #expect(Set(created.map { $0.offset % buyers }).count == 500, "a buyer holds two orders")
                let refusals = Set(answers.filter { $0.status != 201 }.map { "\($0.status) \($0.problemType ?? "")" })
                #expect(
                    refusals.isSubset(of: [
                        "409 urn:crest:problem:sold-out", "409 urn:crest:problem:buyer-limit-reached",
                    ]), "\(refusals)")
                #expect(answers == replays, "a replayed key got another answer")
                try await client.execute(uri: "/v1/sales/\(sale)", method: .get) { response in
                    #expect(
                        response.object["stock"] as? [String: Int] == [
                            "total": 500, "available": 0, "reserved": 500, "sold": 0,
                        ])
                }
            }
        }
    }
}
