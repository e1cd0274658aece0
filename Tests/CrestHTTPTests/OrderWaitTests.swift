import CrestCore
import CrestEngine
import CrestFixtures
import CrestTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// `GET /v1/orders/{id}?wait=N`: a checkout waits for its order's payment with one request.
@Suite("Reading an order that waits for its payment")
struct OrderWaitTests {
    @Test("a waiting read is answered as soon as the order's payment is recorded, or its status changes")
    func answeredOnChange() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let sale = try await client.createSale(stock: 2)
                let paid = try #require(OrderID(try await Self.place(client, sale, "ana")))
                let cancelled = try #require(OrderID(try await Self.place(client, sale, "bob")))
                // Waits of two minutes (the engine's, beyond the route's 10 s): the answers come on the
                // changes, long before, however slow the machine.
                let engine = fixture.engine
                let deadline = ContinuousClock.now + .seconds(120)
                let reads = [paid, cancelled].map { id in
                    Task {
                        let order = try await engine.order(
                            id, waitingUntil: deadline, while: { $0.status == .pendingPayment && $0.payment == nil })
                        return (order, ContinuousClock.now)
                    }
                }
                #expect(try await eventually(timeout: .seconds(60)) { engine.waitingReads == 2 })
                let payment = OrderPayment(id: "pay_wait", status: .created, payURL: "https://psp.example/pay/pay_wait")
                _ = try await engine.recordPayment(PaymentObservation(orderID: paid, payment: payment))
                _ = try await engine.cancelOrder(cancelled)
                let (withPayment, paidAt) = try await reads[0].value
                let (ended, cancelledAt) = try await reads[1].value
                #expect(deadline - max(paidAt, cancelledAt) > .seconds(30), "answered on the change, not at the wait's end")
                #expect(withPayment.payment == payment && withPayment.status == .pendingPayment, "\(withPayment)")
                #expect(ended.status == .cancelled)
                #expect(engine.waitingReads == 0)
                // Over the route, a read of an order that has its payment is answered at once.
                let started = ContinuousClock.now
                let read = try await Self.read(client, paid.description, as: "ana", wait: 10)
                #expect((read.object["payment"] as? [String: Any])?["payUrl"] as? String == payment.payURL, "\(read.object)")
                #expect(ContinuousClock.now - started < .seconds(10))
            }
        }
    }

    @Test("a waiting read with no change is answered at its end with the order as it is; one with nothing to wait for at once")
    func answeredAtTheEnd() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let sale = try await client.createSale(stock: 2)
                let id = try await Self.place(client, sale, "ana")
                var started = ContinuousClock.now
                let waited = try await Self.read(client, id, as: "ana", wait: 1)
                #expect(ContinuousClock.now - started >= .seconds(1))
                #expect(waited.status == .ok && waited.object["status"] as? String == "pending_payment")
                #expect(waited.object["payment"] == nil)
                _ = try await fixture.engine.cancelOrder(try #require(OrderID(id)))
                started = ContinuousClock.now
                let closed = try await Self.read(client, id, as: "ana", wait: 10)
                #expect(ContinuousClock.now - started < .seconds(10), "a cancelled order awaits nothing")
                #expect(closed.object["status"] as? String == "cancelled")
                #expect(fixture.engine.waitingReads == 0)
            }
        }
    }

    @Test("a wait that is not a whole number of seconds from 0 to 10 is refused with a problem")
    func badWait() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let sale = try await client.createSale(stock: 1)
                let id = try await Self.place(client, sale, "ana")
                for wait in ["-1", "11", "1.5", "soon", ""] {
                    let response = try await Self.read(client, id, as: "ana", wait: wait)
                    response.expectProblem(.badRequest, "invalid-request")
                    #expect(String(buffer: response.body).contains("wait"), "\(wait): \(String(buffer: response.body))")
                }
                let zero = try await Self.read(client, id, as: "ana", wait: 0)
                #expect(zero.status == .ok)
            }
        }
    }

    /// `GET /v1/orders/{id}?wait=…` as `buyer`.
    static func read(_ client: some TestClientProtocol, _ id: String, as buyer: String, wait: some CustomStringConvertible)
        async throws -> TestResponse
    {
        try await client.execute(
            uri: "/v1/orders/\(id)?wait=\(wait)", method: .get, headers: try await HTTPFixture.buyerHeaders(buyer)
        ) { $0 }
    }

    /// The id of a new order of `buyer` on `sale`.
    static func place(_ client: some TestClientProtocol, _ sale: String, _ buyer: String) async throws -> String {
        try #require(try await client.placeOrder(sale: sale, key: "k-\(buyer)", buyer: buyer).object["id"] as? String)
    }
}
