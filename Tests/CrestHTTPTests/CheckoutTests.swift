import CrestCore
import CrestEngine
import CrestFixtures
import CrestPayments
import CrestSimulator
import CrestStore
import CrestTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOHTTP1
import Testing

/// `POST /v1/orders/{id}/payment`: a buyer who comes to pay gets the order's payment now, not
/// after the creation jobs of every order placed before.
@Suite("The checkout")
struct CheckoutTests {
    @Test("the checkout's payment is created ahead of the creation jobs waiting for a place; there is one payment per order")
    func aheadOfTheJobs() async throws {
        // One provider call at a time, a second each: the six orders' creation jobs queue for the place.
        var faults = SimulatorFaults()
        faults.latencyMs = 1_000
        var guardConfiguration = PaymentFixture.guardConfiguration
        guardConfiguration.maxInFlight = 1
        guardConfiguration.timeout = .seconds(10)
        try await PaymentFixture.with(faults: faults, guardConfiguration: guardConfiguration) { fixture in
            let sale = try await fixture.sale(stock: 6)
            var orders: [Order] = []
            for buyer in ["a", "b", "c", "d", "e", "f"] { orders.append(try await fixture.order(sale, buyer: buyer)) }
            let last = try #require(orders.last)
            #expect(try await eventually(timeout: .seconds(30)) { fixture.provider.status.inFlight == 1 }, "a creation job calls")
            // Two provider calls of a second each at most (the one in flight, then its own).
            let answer = try await fixture.buyer("f", .POST, "/v1/orders/\(last.id)/payment")
            #expect(answer.status == 200, "\(answer.object)")
            let payment = try #require(answer.object["payment"] as? [String: Any], "\(answer.object)")
            #expect((payment["payUrl"] as? String)?.hasPrefix("http://127.0.0.1:\(fixture.simulatorPort)/pay/") == true)
            #expect(answer.object["status"] as? String == "pending_payment")
            var waiting = 0
            for order in orders.dropLast() where try await fixture.engine.order(order.id).payment == nil { waiting += 1 }
            #expect(waiting >= 3, "the checkout went ahead: of the five orders placed before, \(waiting) still wait for theirs")
            // The job creates the others', and nothing twice.
            for order in orders { try await fixture.waitFor(order.id) { $0.payment != nil } }
            #expect(fixture.simulator.intents(reference: last.id.description).count == 1)
            #expect(try await fixture.engine.order(last.id).payment?.id == payment["id"] as? String)
            // An order with its payment is answered as it is.
            let again = try await fixture.buyer("f", .POST, "/v1/orders/\(last.id)/payment")
            #expect(again.status == 200 && (again.object["payment"] as? [String: Any])?["id"] as? String == payment["id"] as? String)
            #expect(fixture.simulator.intents(reference: last.id.description).count == 1)
        }
    }

    @Test("the checkout refuses another buyer's order, a closed one and one past its window; a provider out of reach is a 503 to retry")
    func refusals() async throws {
        let clock = AdjustableClock()
        var failing = SimulatorFaults()
        failing.errorRate = 1
        try await PaymentFixture.with(faults: failing, clock: clock) { fixture in
            let sale = try await fixture.sale(stock: 3, paymentWindowSeconds: 60)
            let ana = try await fixture.order(sale, buyer: "ana")
            let bob = try await fixture.order(sale, buyer: "bob")
            // Another buyer's order does not exist for this one; an unknown id neither.
            let other = try await fixture.buyer("bob", .POST, "/v1/orders/\(ana.id)/payment")
            #expect(other.status == 404 && other.object["type"] as? String == "urn:crest:problem:order-not-found")
            let unknown = try await fixture.buyer("ana", .POST, "/v1/orders/\(OrderID.make(now: Date()))/payment")
            #expect(unknown.status == 404)
            // A cancelled order takes no payment.
            _ = try await fixture.engine.cancelOrder(bob.id)
            let closed = try await fixture.buyer("bob", .POST, "/v1/orders/\(bob.id)/payment")
            #expect(closed.status == 409 && closed.object["type"] as? String == "urn:crest:problem:order-not-pending", "\(closed)")
            // The provider answering errors: 503, to retry; the order still awaits its payment.
            let unreachable = try await fixture.buyer("ana", .POST, "/v1/orders/\(ana.id)/payment")
            #expect(unreachable.status == 503 && unreachable.object["type"] as? String == "urn:crest:problem:unavailable", "\(unreachable)")
            let waiting = try await fixture.engine.order(ana.id)
            #expect(waiting.status == .pendingPayment && waiting.payment == nil)
            // Past its window (its expiry due) no payment is created any more, whether or not the
            // expiry has run yet.
            clock.advance(by: .seconds(61))
            await #expect(throws: OrderError.paymentWindowClosed(at: waiting.expiresAt)) {
                try await fixture.engine.checkout(waiting)
            }
            // Over the route: `payment-window-closed`, or `order-not-pending` once the expiry ran.
            let late = try await fixture.buyer("ana", .POST, "/v1/orders/\(ana.id)/payment")
            #expect(late.status == 409, "\(late)")
        }
    }

    @Test(
        "payments created at the checkout: an order writes no creation job and gets no payment by itself; the checkout creates it and plans its check; an order nobody came to pay expires with no payment made"
    )
    func createdAtCheckout() async throws {
        let clock = AdjustableClock()
        var configuration = PaymentFixture.engineConfiguration
        configuration.paymentCreation = .checkout
        configuration.expiry.driftCheckFirst = .seconds(30)
        try await PaymentFixture.with(engineConfiguration: configuration, clock: clock) { fixture in
            let sale = try await fixture.sale(stock: 2, paymentWindowSeconds: 120)
            let ana = try await fixture.order(sale, buyer: "ana")
            let bob = try await fixture.order(sale, buyer: "bob")
            func jobs(_ kind: String) async throws -> [Job] {
                try await fixture.store.jobs(matching: JobFilter(kind: kind), after: nil, limit: 100)
            }
            #expect(try await jobs(PaymentJobs.createBatch.name).isEmpty)
            #expect(try await jobs(PaymentJobs.create.name).isEmpty)
            #expect(try await jobs(PaymentJobs.check.name).isEmpty, "a check is planned with the payment, not the order")
            // The job runner polls every 100 ms: a payment made by a job would come within this.
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await fixture.engine.order(ana.id).payment == nil)
            #expect(fixture.simulator.intents(reference: ana.id.description).isEmpty)

            let paying = try await fixture.buyer("ana", .POST, "/v1/orders/\(ana.id)/payment")
            #expect(paying.status == 200, "\(paying.object)")
            let payment = try #require(paying.object["payment"] as? [String: Any], "\(paying.object)")
            #expect(fixture.simulator.intents(reference: ana.id.description).count == 1)
            #expect(try await fixture.engine.order(ana.id).payment?.id == payment["id"] as? String)
            let checks = try await jobs(PaymentJobs.check.name)
            #expect(checks.count == 1 && (try? PaymentJobs.check.parameters(of: checks[0]).orderId) == ana.id, "\(checks)")

            // Bob never came: his order expires at the end of its window, and no payment was made for it.
            clock.advance(by: .seconds(121))
            let expired = try await fixture.waitFor(bob.id) { $0.status == .expired }
            #expect(expired.payment == nil)
            #expect(fixture.simulator.intents(reference: bob.id.description).isEmpty)
        }
    }

    @Test("without a payment provider the checkout is a 409 no-payment-provider")
    func noProvider() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let sale = try await client.createSale(stock: 1)
                let id = try #require(try await client.placeOrder(sale: sale, key: "k-ana", buyer: "ana").object["id"] as? String)
                let response = try await client.execute(
                    uri: "/v1/orders/\(id)/payment", method: .post, headers: try await HTTPFixture.buyerHeaders("ana")
                ) { $0 }
                response.expectProblem(.conflict, "no-payment-provider")
            }
        }
    }
}
