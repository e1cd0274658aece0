import AsyncHTTPClient
import CrestCore
import CrestEngine
import CrestFixtures
import CrestTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// Where an order's time goes, as `/metrics` shows it: each stage of placing it, each stage of its
/// life after, and the lag of the webhooks that move it.
@Suite("Per-stage latency metrics")
struct StageMetricsTests {
    static func count(_ name: String, _ labels: String = "") -> Double {
        TestMetrics.value(of: "\(name)_count\(labels)") ?? 0
    }

    static func stage(_ stage: String) -> Double { count("crest_order_stage_seconds", #"{stage="\#(stage)"}"#) }
    static func lifecycle(_ stage: String) -> Double { count("crest_order_lifecycle_seconds", #"{stage="\#(stage)"}"#) }

    @Test("an order placed over HTTP and paid passes every placement stage and its payment's; one left unpaid expires")
    func stages() async throws {
        // Metrics are process-wide and other suites run beside this one: each count must have grown
        // by at least what this test did.
        let placement = ["admission", "gate", "batch_wait", "commit", "answer"]
        let life = ["payment_created", "paid", "expired", "expiry_late"]
        let before = (placement.map(Self.stage), life.map(Self.lifecycle), Self.count("crest_provider_webhook_lag_seconds"))
        try await PaymentFixture.with { fixture in
            let sale = try await fixture.sale(stock: 5)
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(fixture.crestPort)/v1/sales/\(sale.id)/orders")
            request.method = .POST
            request.headers.add(name: "Authorization", value: "Bearer \(try await HTTPFixture.pass(for: "ana"))")
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "Idempotency-Key", value: "stages-1")
            request.body = .bytes(ByteBuffer(string: #"{"quantity":1}"#))
            let response = try await HTTPClient.crest.execute(request, timeout: .seconds(30))
            #expect(response.status == .created)
            let body = Data(try await response.body.collect(upTo: 1 << 16).readableBytesView)
            let id = try #require(
                (((try JSONSerialization.jsonObject(with: body)) as? [String: Any])?["id"] as? String).flatMap(OrderID.init))
            try await fixture.pay(try await fixture.waitFor(id) { $0.payment != nil })
            try await fixture.waitFor(id) { $0.status == .paid }
            // Another sale's order, with a payment window of a second, left unpaid.
            let unpaid = try await fixture.order(try await fixture.sale(stock: 5, paymentWindowSeconds: 1), buyer: "bo")
            try await fixture.waitFor(unpaid.id) { $0.status == .expired }
        }
        for (index, stage) in placement.enumerated() {
            #expect(Self.stage(stage) >= before.0[index] + 1, "placement stage \(stage)")
        }
        for (index, stage) in life.enumerated() {
            #expect(Self.lifecycle(stage) >= before.1[index] + 1, "lifecycle stage \(stage)")
        }
        #expect(Self.count("crest_provider_webhook_lag_seconds") >= before.2 + 1)
    }
}
