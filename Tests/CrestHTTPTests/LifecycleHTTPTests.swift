import CrestCore
import CrestStore
import CrestTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@Suite("Events, attempt cancellation and jobs over the API")
struct LifecycleHTTPTests {
    static let keyHeader = HTTPField.Name("Idempotency-Key")!

    @Test("an order's events, cancelling an attempt by its key, and the operators' order listing")
    func eventsAndCancellation() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let sale = try await client.createSale(stock: 2)
                let placed = try await client.placeOrder(sale: sale, key: "k-ana", buyer: "ana")
                let orderID = try #require(placed.object["id"] as? String)
                _ = try await client.execute(
                    uri: "/v1/orders/\(orderID)/cancel", method: .post, headers: try await HTTPFixture.buyerHeaders("ana")
                ) { $0 }
                try await client.execute(
                    uri: "/v1/orders/\(orderID)/events", method: .get, headers: try await HTTPFixture.buyerHeaders("ana")
                ) { response in
                    #expect(response.status == .ok)
                    let events = response.object["events"] as? [[String: Any]] ?? []
                    #expect(events.map { $0["type"] as? String } == ["order.created", "order.cancelled"])
                    #expect(events.map { $0["sequence"] as? Int } == [1, 2])
                    #expect(events.allSatisfy { $0["orderId"] as? String == orderID && $0["id"] is String })
                }
                try await client.execute(
                    uri: "/v1/orders/\(OrderID.make())/events", method: .get, headers: try await HTTPFixture.buyerHeaders("ana")
                ) {
                    $0.expectProblem(.notFound, "order-not-found")
                }

                // An attempt cancelled before it arrived: recorded, and its late try is refused.
                var bob = try await HTTPFixture.buyerHeaders("bob")
                bob[Self.keyHeader] = "lost-1"
                try await client.execute(uri: "/v1/sales/\(sale)/orders/cancel", method: .post, headers: bob) { response in
                    #expect(response.status == .ok)
                    #expect(response.object["idempotencyKey"] as? String == "lost-1")
                    #expect(response.object["cancelledAt"] is String)
                    #expect(response.object["order"] == nil)
                }
                try await client.placeOrder(sale: sale, key: "lost-1", buyer: "bob")
                    .expectProblem(.conflict, "attempt-cancelled")
                // An attempt that placed an order: the order is cancelled.
                let bobsOrder = try await client.placeOrder(sale: sale, key: "k-bob", buyer: "bob")
                bob[Self.keyHeader] = "k-bob"
                try await client.execute(uri: "/v1/sales/\(sale)/orders/cancel", method: .post, headers: bob) { response in
                    let order = response.object["order"] as? [String: Any]
                    #expect(order?["id"] as? String == bobsOrder.object["id"] as? String)
                    #expect(order?["status"] as? String == "cancelled")
                }
                bob[Self.keyHeader] = nil
                try await client.execute(uri: "/v1/sales/\(sale)/orders/cancel", method: .post, headers: bob) {
                    $0.expectProblem(.badRequest, "invalid-request")
                }
                try await client.execute(
                    uri: "/v1/sales/\(sale)/orders/cancel", method: .post, headers: bob.setting(Self.keyHeader, "bad key")
                ) { $0.expectProblem(.badRequest, "invalid-request") }
                try await client.execute(
                    uri: "/v1/sales/\(SaleID.make())/orders/cancel", method: .post, headers: bob.setting(Self.keyHeader, "k")
                ) { $0.expectProblem(.notFound, "sale-not-found") }

                // Operators list orders, filtered.
                try await client.execute(
                    uri: "/v1/orders?saleId=\(sale)&status=cancelled&limit=1", method: .get,
                    headers: HTTPFixture.adminHeaders
                ) { response in
                    #expect(response.status == .ok)
                    let orders = response.object["orders"] as? [[String: Any]] ?? []
                    #expect(orders.map { $0["id"] as? String } == [orderID])
                    #expect(response.object["next"] as? String == orderID)
                }
                try await client.execute(
                    uri: "/v1/orders?flagged=true", method: .get, headers: HTTPFixture.adminHeaders
                ) { response in
                    #expect((response.object["orders"] as? [Any])?.isEmpty == true)
                }
                try await client.execute(uri: "/v1/orders", method: .get) {
                    $0.expectProblem(.unauthorized, "unauthorized")
                }
                for query in ["status=lost", "flagged=yes", "saleId=nope", "after=nope", "limit=0", "limit=201"] {
                    try await client.execute(
                        uri: "/v1/orders?\(query)", method: .get, headers: HTTPFixture.adminHeaders
                    ) { $0.expectProblem(.badRequest, "invalid-request") }
                }
            }
        }
    }

    @Test("operators list jobs, see a discarded one with its error, and retry it")
    func jobs() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let id = try await fixture.store.enqueue(
                    [NewJob(kind: "unknown.kind", payload: #"{"n":1}"#, maxAttempts: 1)], at: Date())[0].id
                func job() async throws -> [String: Any] {
                    try await client.execute(uri: "/v1/jobs/\(id)", method: .get, headers: HTTPFixture.adminHeaders) {
                        #expect($0.status == .ok)
                        return $0.object
                    }
                }
                #expect(try await eventually(timeout: .seconds(60)) { try await job()["state"] as? String == "discarded" })
                let discarded = try await job()
                #expect(discarded["lastError"] as? String == "no handler for job kind unknown.kind")
                #expect(discarded["payload"] as? [String: Int] == ["n": 1])
                #expect(discarded["attempt"] as? Int == 1)

                try await client.execute(
                    uri: "/v1/jobs?state=discarded&kind=unknown.kind", method: .get, headers: HTTPFixture.adminHeaders
                ) { response in
                    #expect(response.status == .ok)
                    let jobs = response.object["jobs"] as? [[String: Any]] ?? []
                    #expect(jobs.map { $0["id"] as? Int } == [Int(id.rawValue)])
                }
                try await client.execute(uri: "/v1/jobs/\(id)/retry", method: .post, headers: HTTPFixture.adminHeaders) {
                    response in
                    #expect(response.status == .ok)
                    #expect(response.object["state"] as? String == "available")
                    #expect(response.object["maxAttempts"] as? Int == 2)
                }
                #expect(try await eventually { try await job()["attempt"] as? Int == 2 })
                #expect(try await eventually(timeout: .seconds(60)) { try await job()["state"] as? String == "discarded" })

                // A completed job cannot be retried.
                let sale = try await client.createSale(stock: 1)
                let placed = try await client.placeOrder(sale: sale, key: "k", buyer: "ana")
                let orderText = try #require(placed.object["id"] as? String)
                let orderID = try #require(OrderID(orderText))
                _ = try await client.execute(
                    uri: "/v1/orders/\(orderID)/cancel", method: .post, headers: try await HTTPFixture.buyerHeaders("ana")
                ) { $0 }
                let expiry = try await fixture.store.enqueue([OrderJobs.expiry(of: orderID, at: Date())], at: Date())[0]
                #expect(try await eventually { try await fixture.store.job(expiry.id)?.state == .completed })
                try await client.execute(
                    uri: "/v1/jobs/\(expiry.id)/retry", method: .post, headers: HTTPFixture.adminHeaders
                ) { $0.expectProblem(.conflict, "job-not-retryable") }

                for uri in ["/v1/jobs/999999", "/v1/jobs/abc", "/v1/jobs/0", "/v1/jobs/999999/retry"] {
                    let method: HTTPRequest.Method = uri.hasSuffix("retry") ? .post : .get
                    try await client.execute(uri: uri, method: method, headers: HTTPFixture.adminHeaders) {
                        $0.expectProblem(.notFound, "job-not-found")
                    }
                }
                for query in ["state=lost", "after=x", "limit=0", "kind="] {
                    try await client.execute(uri: "/v1/jobs?\(query)", method: .get, headers: HTTPFixture.adminHeaders) {
                        $0.expectProblem(.badRequest, "invalid-request")
                    }
                }
                try await client.execute(uri: "/v1/jobs", method: .get) { $0.expectProblem(.unauthorized, "unauthorized") }
                try await client.execute(uri: "/v1/jobs/\(id)/retry", method: .post) {
                    $0.expectProblem(.unauthorized, "unauthorized")
                }
                try await client.execute(uri: "/metrics", method: .get) { response in
                    let text = String(buffer: response.body)
                    #expect(text.contains("crest_job_attempts_total{"))
                    #expect(text.contains(#"outcome="discarded""#))
                    #expect(text.contains("crest_job_run_duration_seconds"))
                    #expect(text.contains("crest_job_queue_depth"))
                }
            }
        }
    }
}
