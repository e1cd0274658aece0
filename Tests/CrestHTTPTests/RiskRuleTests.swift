import CrestCore
import CrestHTTP
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// Operators' risk rules at admission: deny lists and velocity, managed through `/v1/risk-rules`.
@Suite("Risk rules")
struct RiskRuleTests {
    static func createRule(_ client: some TestClientProtocol, _ rule: [String: Any]) async throws -> String {
        try await client.execute(
            uri: "/v1/risk-rules", method: .post, headers: HTTPFixture.adminHeaders, body: HTTPFixture.json(rule)
        ) { response in
            #expect(response.status == .created, "\(String(buffer: response.body))")
            return response.object["id"] as? String ?? ""
        }
    }

    @Test("a denied buyer gets 403 risk-refused, others are served; the rule is listed, read, and deleted — then the same key goes through")
    func denyBuyer() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let sale = try await client.createSale(stock: 10)
                let rule = try await Self.createRule(
                    client, ["type": "deny-buyer", "buyer": "mallory", "note": "chargebacks on every order"])
                let refused = try await client.placeOrder(sale: sale, key: "m1", buyer: "mallory")
                refused.expectProblem(.forbidden, "risk-refused")
                #expect(refused.headers[.retryAfter] == nil)
                #expect(try await client.placeOrder(sale: sale, key: "a1", buyer: "ana").status == .created)
                try await client.execute(uri: "/v1/risk-rules", method: .get, headers: HTTPFixture.adminHeaders) {
                    let rules = $0.object["rules"] as? [[String: Any]] ?? []
                    #expect(rules.count == 1)
                    #expect(rules.first?["type"] as? String == "deny-buyer")
                    #expect(rules.first?["buyer"] as? String == "mallory")
                    #expect(rules.first?["active"] as? Bool == true)
                }
                try await client.execute(uri: "/v1/risk-rules/\(rule)", method: .get, headers: HTTPFixture.adminHeaders) {
                    #expect($0.object["note"] as? String == "chargebacks on every order")
                }
                try await client.execute(uri: "/v1/risk-rules/\(rule)", method: .delete, headers: HTTPFixture.adminHeaders) {
                    #expect($0.status == .noContent)
                }
                try await client.execute(uri: "/v1/risk-rules/\(rule)", method: .delete, headers: HTTPFixture.adminHeaders) {
                    $0.expectProblem(.notFound, "risk-rule-not-found")
                }
                #expect(try await client.placeOrder(sale: sale, key: "m1", buyer: "mallory").status == .created)
            }
        }
    }

    @Test("a denied network refuses every address in it (over a real socket); an expired rule no longer applies")
    func denyAddress() async throws {
        let clock = StoppedClock()
        try await HTTPFixture.with(clock: clock) { fixture in
            try await fixture.app.test(.live) { client in
                let sale = try await client.createSale(stock: 10, perBuyerLimit: 5)
                let expires = Date(timeIntervalSinceNow: 600)
                _ = try await Self.createRule(
                    client,
                    ["type": "deny-address", "address": "127.0.0.0/8", "expiresAt": ISO8601DateFormatter().string(from: expires)])
                try await client.placeOrder(sale: sale, key: "k1", buyer: "ana").expectProblem(.forbidden, "risk-refused")
                // Just past it, however long the run took to get here (the expiry is in real time,
                // the stopped clock started before); the buyer's pass (an hour) still holds.
                clock.advance(by: .seconds(expires.timeIntervalSince(clock.now()) + 1))
                #expect(try await client.placeOrder(sale: sale, key: "k1", buyer: "ana").status == .created)
            }
        }
    }

    @Test(
        "more distinct keys than the limit within the window puts the buyer in a cool-down (Retry-After); a retried key does not count; after it, served again"
    )
    func velocity() async throws {
        let clock = StoppedClock()
        try await HTTPFixture.with(clock: clock) { fixture in
            try await fixture.app.test(.router) { client in
                let sale = try await client.createSale(stock: 100, perBuyerLimit: 10)
                _ = try await Self.createRule(
                    client,
                    [
                        "type": "velocity", "scope": "buyer", "measure": "distinct-keys", "limit": 2, "windowSeconds": 60,
                        "coolDownSeconds": 300,
                    ])
                #expect(try await client.placeOrder(sale: sale, key: "k1", buyer: "bot").status == .created)
                #expect(try await client.placeOrder(sale: sale, key: "k1", buyer: "bot").status == .created, "a retry")
                #expect(try await client.placeOrder(sale: sale, key: "k2", buyer: "bot").status == .created)
                let refused = try await client.placeOrder(sale: sale, key: "k3", buyer: "bot")
                refused.expectProblem(.forbidden, "risk-refused")
                #expect(refused.headers[.retryAfter] == "300")
                let cooling = try await client.placeOrder(sale: sale, key: "k1", buyer: "bot")
                cooling.expectProblem(.forbidden, "risk-refused")
                #expect(cooling.headers[.retryAfter] == "300", "the cool-down refuses every attempt")
                #expect(try await client.placeOrder(sale: sale, key: "h1", buyer: "human").status == .created)
                clock.advance(by: .seconds(301))
                #expect(try await client.placeOrder(sale: sale, key: "k3", buyer: "bot").status == .created, "key unused")
            }
        }
    }

    @Test("bad rules are refused with every problem named")
    func badRules() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                for (rule, fields) in [
                    (["type": "deny-buyer"], ["buyer"]),
                    (["type": "deny-address", "address": "300.1.2.3/8"], ["address"]),
                    (["type": "velocity", "scope": "buyer"], ["measure", "limit", "windowSeconds", "coolDownSeconds"]),
                    (
                        [
                            "type": "velocity", "scope": "buyer", "measure": "distinct-keys", "limit": 5_000,
                            "windowSeconds": 0, "coolDownSeconds": 60,
                        ], ["limit", "windowSeconds"]
                    ),
                    (["type": "deny-buyer", "buyer": "x", "expiresAt": "2001-01-01T00:00:00Z"], ["expiresAt"]),
                ] as [([String: Any], [String])] {
                    try await client.execute(
                        uri: "/v1/risk-rules", method: .post, headers: HTTPFixture.adminHeaders, body: HTTPFixture.json(rule)
                    ) { response in
                        response.expectProblem(.badRequest, "invalid-request")
                        let named = (response.object["errors"] as? [[String: Any]] ?? []).compactMap { $0["field"] as? String }
                        #expect(named == fields, "\(rule)")
                    }
                }
                try await client.execute(
                    uri: "/v1/risk-rules", method: .post, headers: HTTPFixture.adminHeaders,
                    body: HTTPFixture.json(["type": "deny-everyone"])
                ) { #expect($0.status == .badRequest) }
                try await client.execute(uri: "/v1/risk-rules", method: .get) { $0.expectProblem(.unauthorized, "unauthorized") }
            }
        }
    }
}
