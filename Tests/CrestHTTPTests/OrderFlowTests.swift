import CrestCore
import CrestFixtures
import CrestStore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@Suite("Order flow over the API")
struct OrderFlowTests {
    @Test("create a sale, order, read the order, cancel it, and another buyer takes the stock")
    func walkThrough() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let sale = try await client.createSale(stock: 1)
                let placed = try await client.placeOrder(sale: sale, key: "k-ana", buyer: "ana")
                #expect(placed.status == .created)
                let order = placed.object
                let orderID = try #require(order["id"] as? String)
                #expect(order["status"] as? String == "pending_payment")
                #expect(order["saleId"] as? String == sale)
                #expect((order["amount"] as? [String: Any])?["amount"] as? Int == 499_900)
                #expect(placed.headers[.location] == "/v1/orders/\(orderID)")

                try await client.execute(
                    uri: "/v1/orders/\(orderID)", method: .get, headers: try await HTTPFixture.buyerHeaders("ana")
                ) { response in
                    #expect(response.status == .ok)
                    #expect(response.object["id"] as? String == orderID)
                }
                try await client.execute(uri: "/v1/sales/\(sale)", method: .get) { response in
                    let stock = response.object["stock"] as? [String: Int]
                    #expect(stock == ["total": 1, "available": 0, "reserved": 1, "sold": 0])
                }
                try await client.placeOrder(sale: sale, key: "k-bob-1", buyer: "bob")
                    .expectProblem(.conflict, "sold-out")

                try await client.execute(
                    uri: "/v1/orders/\(orderID)/cancel", method: .post, headers: try await HTTPFixture.buyerHeaders("ana")
                ) { response in
                    #expect(response.status == .ok)
                    #expect(response.object["status"] as? String == "cancelled")
                }
                let bob = try await client.placeOrder(sale: sale, key: "k-bob-2", buyer: "bob")
                #expect(bob.status == .created)
                try await client.execute(
                    uri: "/v1/orders/\(orderID)/cancel", method: .post, headers: try await HTTPFixture.buyerHeaders("ana")
                ) { response in
                    #expect(response.status == .ok, "cancelling twice is harmless")
                }
                try await client.execute(uri: "/v1/sales/\(sale)", method: .get) { response in
                    let stock = response.object["stock"] as? [String: Int]
                    #expect(stock == ["total": 1, "available": 0, "reserved": 1, "sold": 0])
                }
            }
        }
    }

    @Test("the same key and body replays the order; another body with the key is 422")
    func idempotencyOverHTTP() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let sale = try await client.createSale(stock: 5, perBuyerLimit: 2)
                let first = try await client.placeOrder(sale: sale, key: "same", buyer: "ana")
                let again = try await client.placeOrder(sale: sale, key: "same", buyer: "ana")
                #expect(first.status == .created && again.status == .created)
                #expect(first.object["id"] as? String == again.object["id"] as? String)
                #expect(again.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
                try await client.placeOrder(sale: sale, key: "same", buyer: "ana", quantity: 2)
                    .expectProblem(.unprocessableContent, "idempotency-key-reused")
                try await client.placeOrder(sale: sale, key: "other", buyer: "ana", quantity: 2)
                    .expectProblem(.conflict, "buyer-limit-reached")
            }
        }
    }

    @Test("a sale that has not started answers 409 with Retry-After; an ended one 409")
    func saleWindow() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let later = Date().addingTimeInterval(3600).formatted(.iso8601)
                let upcoming = try await client.createSale(extra: ["startsAt": later])
                let early = try await client.placeOrder(sale: upcoming, key: "k", buyer: "ana")
                early.expectProblem(.conflict, "sale-not-open")
                let retryAfter = Int(early.headers[.retryAfter] ?? "") ?? 0
                #expect((3500...3600).contains(retryAfter))

                let start = Date().addingTimeInterval(-7200).formatted(.iso8601)
                let end = Date().addingTimeInterval(-3600).formatted(.iso8601)
                let ended = try await client.createSale(extra: ["startsAt": start, "endsAt": end])
                try await client.placeOrder(sale: ended, key: "k", buyer: "ana").expectProblem(.conflict, "sale-closed")
            }
        }
    }

    @Test("a store that stops answering gives 503 problems with Retry-After, never a crash")
    func storeDownIs503() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let sale = try await client.createSale(stock: 5)
                try await fixture.store.close()
                try await client.execute(uri: "/readyz", method: .get) { response in
                    response.expectProblem(.serviceUnavailable, "unavailable")
                    #expect(response.headers[.retryAfter] == "1")
                }
                try await client.execute(uri: "/healthz", method: .get) { #expect($0.status == .ok) }
                try await client.placeOrder(sale: sale, key: "k", buyer: "ana")
                    .expectProblem(.serviceUnavailable, "unavailable")
                try await client.execute(uri: "/v1/sales/\(sale)", method: .get) {
                    $0.expectProblem(.serviceUnavailable, "unavailable")
                }
            }
        }
    }

    @Test("health, readiness and Prometheus metrics")
    func operations() async throws {
        _ = TestMetrics.registry
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                try await client.execute(uri: "/healthz", method: .get) { #expect($0.status == .ok) }
                try await client.execute(uri: "/readyz", method: .get) { #expect($0.status == .ok) }
                let sale = try await client.createSale(stock: 1)
                _ = try await client.placeOrder(sale: sale, key: "k1", buyer: "ana")
                _ = try await client.placeOrder(sale: sale, key: "k2", buyer: "bob")
                try await client.execute(uri: "/metrics", method: .get) { response in
                    let text = String(buffer: response.body)
                    #expect(text.contains(#"crest_order_attempts_total{outcome="accepted"}"#))
                    #expect(text.contains(#"crest_order_attempts_total{outcome="sold_out"}"#))
                    #expect(text.contains(#"crest_sale_stock{sale="\#(sale)",state="reserved"} 1"#))
                    #expect(text.contains("crest_batch_size_bucket"))
                    #expect(text.contains(#"crest_problems_total{type="sold-out"}"#))
                    #expect(text.contains("\ncrest_batch_queue_depth ") && text.contains("\ncrest_database_connection_waiters 0"))
                    #expect(text.contains("crest_batch_commit_duration_seconds_bucket"))
                    #expect(text.contains(#"http_server_request_duration_bucket{http_route="/v1/sales/{saleID}/orders""#))
                }
            }
        }
    }
}
