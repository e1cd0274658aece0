import AsyncHTTPClient
import CrestCore
import CrestEngine
import CrestFixtures
import CrestPayments
import CrestSimulator
import CrestStore
import CrestTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import Testing

@Suite("Payments against the provider simulator over loopback")
struct PaymentTests {
    @Test("happy path: order → payment created → buyer pays → webhook → paid, stock sold")
    func happyPath() async throws {
        try await PaymentFixture.with { fixture in
            let sale = try await fixture.sale(stock: 3)
            let placed = try await fixture.order(sale, buyer: "ana")
            let withPayment = try await fixture.waitFor(placed.id) { $0.payment != nil }
            #expect(withPayment.payment?.status == .created)
            #expect(withPayment.payment?.payURL?.hasPrefix("http://127.0.0.1:\(fixture.simulatorPort)/pay/") == true)
            try await fixture.pay(withPayment)
            let paid = try await fixture.waitFor(placed.id) { $0.status == .paid }
            #expect(paid.payment?.status == .succeeded)
            #expect(try await fixture.engine.sale(sale.id).stock == StockCounters(total: 3, available: 2, reserved: 0, sold: 1))
            #expect(try await fixture.engine.events(of: placed.id).map(\.kind) == [.created, .paid])
            // Created by its reservation batch's job, with no job of its own.
            let creations = try await fixture.engine.jobs(
                matching: JobFilter(state: .completed, kind: PaymentJobs.createBatch.name), after: nil, limit: 10)
            #expect(try creations.map { try PaymentJobs.createBatch.parameters(of: $0).orderIds } == [[placed.id]])
            #expect(try await fixture.engine.jobs(matching: JobFilter(kind: PaymentJobs.create.name), after: nil, limit: 10).isEmpty)
        }
    }

    @Test("duplicate, reordered and delayed webhooks change nothing twice")
    func messyWebhooks() async throws {
        var faults = SimulatorFaults()
        faults.webhookDuplicateRate = 1
        faults.webhookReorderRate = 1
        faults.webhookReorderMs = 300
        faults.webhookDelayMs = 100
        try await PaymentFixture.with(faults: faults) { fixture in
            let sale = try await fixture.sale(stock: 10)
            var orders: [Order] = []
            for index in 0..<6 {
                let order = try await fixture.order(sale, buyer: "buyer-\(index)")
                orders.append(try await fixture.waitFor(order.id) { $0.payment != nil })
            }
            for order in orders.prefix(4) { try await fixture.pay(order) }
            try await fixture.pay(orders[4], outcome: .failed)
            for order in orders.prefix(4) {
                try await fixture.waitFor(order.id) { $0.status == .paid && $0.payment?.status == .succeeded }
            }
            try await fixture.waitFor(orders[4].id) { $0.payment?.status == .failed }
            // Every event was sent twice, some overtaking others: let them all land.
            #expect(
                try await eventually {
                    let stats = fixture.dispatcher.statistics
                    return stats.delivered == 2 * stats.emitted
                })
            for order in orders.prefix(4) {
                let events = try await fixture.engine.events(of: order.id)
                #expect(events.map(\.kind) == [.created, .paid])
            }
            #expect(try await fixture.engine.order(orders[4].id).status == .pendingPayment)
            #expect(try await fixture.engine.sale(sale.id).stock == StockCounters(total: 10, available: 4, reserved: 2, sold: 4))
        }
    }

    @Test("a webhook that arrives before Crest's own create call returned is handled")
    func webhookBeforeCreateReturned() async throws {
        var faults = SimulatorFaults()
        // The answer to the create call comes late, its webhook does not. Late enough that a loaded
        // CI machine still sees the order's payment before the answer (1.5 s was once too short),
        // and well inside the call's timeout, so the late answer is an answer.
        faults.latencyMs = 5000
        var guardConfiguration = PaymentFixture.guardConfiguration
        guardConfiguration.timeout = .seconds(15)
        try await PaymentFixture.with(faults: faults, guardConfiguration: guardConfiguration) { fixture in
            let sale = try await fixture.sale(stock: 2)
            let placed = try await fixture.order(sale, buyer: "ana")
            let known = try await fixture.waitFor(placed.id) { $0.payment != nil }
            let creation = try #require(
                try await fixture.engine.jobs(matching: JobFilter(kind: PaymentJobs.createBatch.name), after: nil, limit: 1).first)
            #expect(creation.state == .running, "the create call had already returned")
            try await fixture.pay(known)
            try await fixture.waitFor(placed.id) { $0.status == .paid }
            #expect(try await eventually { try await fixture.engine.job(creation.id).state == .completed })
            let order = try await fixture.engine.order(placed.id)
            #expect(order.payment?.status == .succeeded, "the create call's late answer must not move the payment back")
            #expect(try await fixture.engine.events(of: placed.id).map(\.kind) == [.created, .paid])
        }
    }

    @Test("provider errors and timeouts open the breaker; calls fail fast; probes close it on recovery; no order is lost")
    func breaker() async throws {
        var faults = SimulatorFaults()
        faults.errorRate = 1
        var guardConfiguration = PaymentFixture.guardConfiguration
        // Short enough that the 2 s hangs below time out; long enough that a probe answered by a
        // loaded 2-core machine is not taken for one.
        guardConfiguration.timeout = .seconds(1)
        try await PaymentFixture.with(faults: faults, guardConfiguration: guardConfiguration) { fixture in
            let sale = try await fixture.sale(stock: 30)
            var orders: [Order] = []
            // A new order's create call is a probe of the half-open breaker. On a loaded machine a
            // probe may itself be slow and reopen the breaker, so place orders (each with its
            // payment) until it closes, a few at most.
            func probeUntilClosed(_ label: String) async throws -> Bool {
                for attempt in 0..<5 {
                    orders.append(try await fixture.order(sale, buyer: "\(label)-\(attempt)"))
                    try await fixture.waitFor(orders[orders.count - 1].id) { $0.payment != nil }
                    if try await eventually(timeout: .seconds(3), { fixture.provider.status.breaker.state == .closed }) {
                        return true
                    }
                }
                return false
            }
            for index in 0..<8 { orders.append(try await fixture.order(sale, buyer: "e-\(index)")) }
            #expect(try await eventually { fixture.provider.status.breaker.state == .open })
            #expect(try await eventually { fixture.provider.status.breaker.rejected > 0 }, "calls did not fail fast")
            let status = try await fixture.admin(.GET, "/v1/provider")
            #expect(status.object["configured"] as? Bool == true)
            #expect((status.object["breaker"] as? [String: Any])?["opened"] as? Int ?? 0 >= 1)
            #expect(try await fixture.engine.order(orders[0].id).payment == nil)

            fixture.simulator.faults = SimulatorFaults()
            for order in orders { try await fixture.waitFor(order.id) { $0.payment != nil } }
            #expect(try await probeUntilClosed("after-errors"))

            // Timeouts: the provider takes each call but answers too late.
            var slow = SimulatorFaults()
            slow.timeoutRate = 1
            slow.timeoutMs = 2000
            fixture.simulator.faults = slow
            let opened = fixture.provider.status.breaker.opened
            for index in 0..<6 { orders.append(try await fixture.order(sale, buyer: "t-\(index)")) }
            #expect(try await eventually { fixture.provider.status.breaker.opened > opened })
            fixture.simulator.faults = SimulatorFaults()
            // The timed-out calls took effect: their webhooks told Crest of the payments, so no call
            // is left to probe with. The next order's call is the probe that closes the breaker.
            for order in orders { try await fixture.waitFor(order.id) { $0.payment != nil } }
            #expect(try await probeUntilClosed("after-recovery"))
            // Every order is still there, pending, its stock reserved; each has one payment.
            let paymentIDs = Set(try await orders.asyncMap { try await fixture.engine.order($0.id).payment?.id })
            #expect(paymentIDs.count == orders.count)
            #expect(try await fixture.engine.sale(sale.id).stock.reserved == Int64(orders.count))
        }
    }

    @Test("a payment that succeeds after expiry is refunded: final status refunded, stock counted once")
    func latePaymentIsRefunded() async throws {
        // Crest's clock is the test's: the order expires when the test moves it past the window.
        let clock = AdjustableClock()
        try await PaymentFixture.with(clock: clock) { fixture in
            let sale = try await fixture.sale(stock: 2, paymentWindowSeconds: 60)
            let placed = try await fixture.order(sale, buyer: "ana")
            let withPayment = try await fixture.waitFor(placed.id) { $0.payment != nil }
            clock.advance(by: .seconds(61))
            try await fixture.waitFor(placed.id) { $0.status == .expired }
            #expect(try await fixture.engine.sale(sale.id).stock == StockCounters(total: 2, available: 2, reserved: 0, sold: 0))
            try await fixture.pay(withPayment)
            let refunded = try await fixture.waitFor(placed.id) { $0.status == .refunded }
            #expect(refunded.payment?.status == .refunded)
            #expect(refunded.flag?.reason == .confirmAfterCancel)
            #expect(try fixture.simulator.intent(withPayment.payment!.id).status == .refunded)
            #expect(try await fixture.engine.events(of: placed.id).map(\.kind) == [.created, .expired, .refunded])
            #expect(try await fixture.engine.sale(sale.id).stock == StockCounters(total: 2, available: 2, reserved: 0, sold: 0))
        }
    }

    @Test("expiry asks the provider first: a success whose webhook was dropped makes the order paid, not expired")
    func expiryAsksProvider() async throws {
        var faults = SimulatorFaults()
        faults.webhookDropRate = 1
        let clock = AdjustableClock()
        try await PaymentFixture.with(faults: faults, clock: clock) { fixture in
            let sale = try await fixture.sale(stock: 2, paymentWindowSeconds: 60)
            let placed = try await fixture.order(sale, buyer: "ana")
            let withPayment = try await fixture.waitFor(placed.id) { $0.payment != nil }
            try await fixture.pay(withPayment)
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await fixture.engine.order(placed.id).status == .pendingPayment, "the webhook was dropped")
            clock.advance(by: .seconds(61))
            let order = try await fixture.waitFor(placed.id, timeout: .seconds(60)) { $0.status != .pendingPayment }
            #expect(order.status == .paid)
            #expect(try await fixture.engine.events(of: placed.id).map(\.kind) == [.created, .paid])
            #expect(try await fixture.engine.sale(sale.id).stock == StockCounters(total: 2, available: 1, reserved: 0, sold: 1))
            #expect(fixture.dispatcher.statistics.delivered == 0)
        }
    }

    @Test(
        "before the expiry, the janitor asks the provider about an awaited payment: a success or failure whose webhook was lost is recorded and counted; none is planned past the window"
    )
    func driftCheck() async throws {
        var faults = SimulatorFaults()
        faults.webhookDropRate = 1
        let clock = AdjustableClock()
        try await PaymentFixture.with(faults: faults, clock: clock) { fixture in
            let sale = try await fixture.sale(stock: 3, paymentWindowSeconds: 900)
            let paid = try await fixture.waitFor(try await fixture.order(sale, buyer: "ana").id) { $0.payment != nil }
            let failed = try await fixture.waitFor(try await fixture.order(sale, buyer: "bob").id) { $0.payment != nil }
            let untouched = try await fixture.waitFor(try await fixture.order(sale, buyer: "cid").id) { $0.payment != nil }
            try await fixture.pay(paid)
            try await fixture.pay(failed, outcome: .failed)
            let succeededBefore = TestMetrics.value(of: #"crest_payment_drift_healed_total{status="succeeded"}"#) ?? 0
            let failedBefore = TestMetrics.value(of: #"crest_payment_drift_healed_total{status="failed"}"#) ?? 0
            #expect(try await fixture.engine.order(paid.id).status == .pendingPayment, "the webhook was dropped")
            // A window that ends before the first check (60 s) gets none: its expiry asks the provider.
            let short = try await fixture.sale(stock: 1, paymentWindowSeconds: 30)
            let brief = try await fixture.order(short, buyer: "dan")
            // Its payment job has ended (it would have planned the check before).
            while try await !fixture.store.jobs(matching: JobFilter(kind: PaymentJobs.createBatch.name), after: nil, limit: 10)
                .contains(where: {
                    (try? PaymentJobs.createBatch.parameters(of: $0).orderIds.contains(brief.id)) == true && $0.state == .completed
                })
            {
                try await Task.sleep(for: .milliseconds(10))
            }
            let checked = try await fixture.store.jobs(matching: JobFilter(kind: PaymentJobs.check.name), after: nil, limit: 10)
            #expect(!checked.contains { (try? PaymentJobs.check.parameters(of: $0).orderId) == brief.id })
            clock.advance(by: .seconds(61))
            try await fixture.waitFor(paid.id) { $0.status == .paid }
            try await fixture.waitFor(failed.id) { $0.payment?.status == .failed }
            #expect(try await fixture.engine.order(failed.id).status == .pendingPayment, "a failed payment may be tried again")
            #expect(try await fixture.engine.order(untouched.id).payment?.status == .created)
            // A check counts its drift, and is finished, after its record (which the waits above saw):
            // on a loaded machine, a moment later.
            #expect(
                try await eventually {
                    TestMetrics.value(of: #"crest_payment_drift_healed_total{status="succeeded"}"#) ?? 0 >= succeededBefore + 1
                        && TestMetrics.value(of: #"crest_payment_drift_healed_total{status="failed"}"#) ?? 0 >= failedBefore + 1
                }, "the healed drift was not counted")
            // The unpaid ones stay checked until their window; the paid one's check is done.
            let live = Locked<Set<OrderID>>([])
            let settled = try await eventually {
                let checks = try await fixture.store.jobs(matching: JobFilter(kind: PaymentJobs.check.name), after: nil, limit: 10)
                let ids = Set(checks.filter(\.state.isLive).compactMap { try? PaymentJobs.check.parameters(of: $0).orderId })
                live.withLock { $0 = ids }
                return ids == [failed.id, untouched.id]
            }
            #expect(settled, "checks still live for \(live.value), expected \([failed.id, untouched.id])")
        }
    }

    @Test(
        "bad signature, stale timestamp, unknown event type, malformed body, unknown order → 4xx, no state change; a replay changes nothing twice"
    )
    func badWebhooks() async throws {
        try await PaymentFixture.with { fixture in
            let sale = try await fixture.sale(stock: 2)
            let placed = try await fixture.order(sale, buyer: "ana")
            let order = try await fixture.waitFor(placed.id) { $0.payment != nil }
            let payment = try #require(order.payment)
            func event(type: String = "payment_intent.succeeded", reference: String? = nil) throws -> Data {
                let intent = ProviderAPI.Intent(
                    id: payment.id, reference: reference ?? order.id.description, amount: 499_900, currency: "CNY",
                    status: .succeeded, payUrl: nil, created: 0, updated: 0)
                return try JSONEncoder().encode(
                    ProviderAPI.Event(id: "evt_forged_\(UUID())", type: type, created: 0, data: intent))
            }
            let secret = PaymentFixture.webhookSecret
            let good = try event()
            let cases: [(String, Data, String?, Int, String)] = [
                ("no signature", good, nil, 401, "invalid-signature"),
                ("garbled header", good, "v1=zz", 401, "invalid-signature"),
                ("wrong secret", good, WebhookSignature.sign(good, secret: "guess", at: Date()), 401, "invalid-signature"),
                (
                    "body changed after signing", try event(), WebhookSignature.sign(good, secret: secret, at: Date()), 401,
                    "invalid-signature"
                ),
                (
                    "stale", good, WebhookSignature.sign(good, secret: secret, at: Date().addingTimeInterval(-400)), 401,
                    "stale-signature"
                ),
                (
                    "from the future", good, WebhookSignature.sign(good, secret: secret, at: Date().addingTimeInterval(400)),
                    401, "stale-signature"
                ),
            ]
            for (name, body, signature, status, kind) in cases {
                let answer = try await fixture.postWebhook(body, signature: signature)
                #expect(answer.status == status, "\(name)")
                #expect(answer.type == "urn:crest:problem:\(kind)", "\(name)")
            }
            let signed: [(String, Data, Int, String)] = [
                ("unknown type", try event(type: "charge.disputed"), 422, "unknown-event-type"),
                ("malformed", Data("{\"id\": 1".utf8), 400, "invalid-body"),
                ("not an event", Data("[1,2]".utf8), 400, "invalid-body"),
                ("unknown order", try event(reference: OrderID.make().description), 404, "order-not-found"),
                ("not an order id", try event(reference: "cart-17"), 400, "invalid-request"),
            ]
            for (name, body, status, kind) in signed {
                let answer = try await fixture.postWebhook(body, signature: WebhookSignature.sign(body, secret: secret, at: Date()))
                #expect(answer.status == status, "\(name)")
                #expect(answer.type == "urn:crest:problem:\(kind)", "\(name)")
            }
            let after = try await fixture.engine.order(order.id)
            #expect(after.status == .pendingPayment)
            #expect(after.payment?.status == .created)
            #expect(try await fixture.engine.events(of: order.id).map(\.kind) == [.created])
            // The same forged-looking event, properly signed, is accepted: the checks were the reason.
            let signature = WebhookSignature.sign(good, secret: secret, at: Date())
            let answer = try await fixture.postWebhook(good, signature: signature)
            #expect(answer.status == 200)
            #expect(try await fixture.engine.order(order.id).status == .paid)
            // Replayed as it was (inside the tolerance): acknowledged, and nothing changes twice.
            let replayed = try await fixture.postWebhook(good, signature: signature)
            #expect(replayed.status == 200)
            // Replayed with its old signature after the tolerance (signed 400 s ago): refused.
            let old = try await fixture.postWebhook(
                good, signature: WebhookSignature.sign(good, secret: secret, at: Date().addingTimeInterval(-400)))
            #expect(old.status == 401 && old.type == "urn:crest:problem:stale-signature")
            #expect(try await fixture.engine.events(of: order.id).map(\.kind) == [.created, .paid])
            #expect(try await fixture.engine.sale(order.saleID).stock.sold == 1)
        }
    }
}

@Suite("Statements and payment lists from the simulator")
struct StatementTests {
    @Test("the statement has a charge line per settled payment (fee, status now) and a refund line per refund, paged in JSON as in CSV")
    func statement() async throws {
        try await PaymentFixture.with { fixture in
            let sale = try await fixture.sale(stock: 5)
            let start = Date().addingTimeInterval(-5)
            var paid: [Order] = []
            for index in 0..<3 {
                let order = try await fixture.order(sale, buyer: "s-\(index)")
                try await fixture.pay(try await fixture.waitFor(order.id) { $0.payment != nil })
                paid.append(try await fixture.waitFor(order.id) { $0.status == .paid })
            }
            // Cancelled, then paid: refunded by Crest — a refund line.
            let late = try await fixture.waitFor(try await fixture.order(sale, buyer: "late").id) { $0.payment != nil }
            _ = try await fixture.engine.cancelOrder(late.id)
            try await fixture.pay(late)
            try await fixture.waitFor(late.id) { $0.status == .refunded }
            let end = Date().addingTimeInterval(5)

            let rows = try await fixture.provider.statement(from: start, to: end)
            let charges = rows.filter { $0.kind == .charge }
            #expect(Set(charges.map(\.reference)) == Set((paid + [late]).map(\.id.description)))
            #expect(charges.allSatisfy { $0.amount == 499_900 && $0.currency == "CNY" && $0.fee == 2_999 })
            #expect(charges.filter { $0.status == .succeeded }.count == 3)
            let refunds = rows.filter { $0.kind == .refund }
            #expect(refunds.map(\.reference) == [late.id.description] && refunds.first?.status == .refunded)
            #expect(rows.allSatisfy { $0.createdAt >= start.addingTimeInterval(-1) && $0.settledAt >= $0.createdAt })
            #expect(try await fixture.provider.statement(from: end, to: end.addingTimeInterval(60)).isEmpty)

            // The same lines in pages of two, and as CSV.
            let window = "from=\(Int(start.timeIntervalSince1970))&to=\(Int(end.timeIntervalSince1970))"
            var paged: [String] = []
            var after: String?
            repeat {
                let page = try await Self.get("/v1/statements?\(window)&format=json&limit=2\(after.map { "&after=\($0)" } ?? "")", fixture)
                let json = try #require(try JSONSerialization.jsonObject(with: page) as? [String: Any])
                paged += (json["lines"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
                after = json["next"] as? String
            } while after != nil
            #expect(paged == rows.map(\.lineID))
            #expect(paged == paged.sorted(), "lines come in line id order: charges, then refunds")
            let csv = String(decoding: try await Self.get("/v1/statements?\(window)", fixture), as: UTF8.self)
            #expect(csv.split(separator: "\n").count == rows.count + 1)
            #expect(csv.hasPrefix(ProviderAPI.statementHeader))
        }
    }

    @Test("the simulator lists the payments made for one reference: the order's own, then a duplicate charge; a reference is required")
    func intentsByReference() async throws {
        var faults = SimulatorFaults()
        faults.duplicateChargeRate = 1
        try await PaymentFixture.with(faults: faults) { fixture in
            let sale = try await fixture.sale(stock: 2)
            let order = try await fixture.waitFor(try await fixture.order(sale, buyer: "listed").id) { $0.payment != nil }
            let payment = try #require(order.payment)
            #expect(try await Self.intents(of: order.id.description, fixture) == [payment.id])
            try await fixture.pay(order)
            let charged = try await Self.intents(of: order.id.description, fixture)
            #expect(charged.count == 2 && charged.first == payment.id, "\(charged)")
            #expect(try await Self.intents(of: "no-such-order", fixture).isEmpty)
            let response = try await HTTPClient.crest.execute(
                HTTPClientRequest(url: "http://127.0.0.1:\(fixture.simulatorPort)/v1/payment_intents"), timeout: .seconds(10))
            #expect(response.status == .badRequest)
        }
    }

    static func intents(of reference: String, _ fixture: PaymentFixture) async throws -> [String] {
        let body = try await get("/v1/payment_intents?reference=\(reference)", fixture)
        let json = try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])
        return (json["data"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
    }

    static func get(_ path: String, _ fixture: PaymentFixture) async throws -> Data {
        let response = try await HTTPClient.crest.execute(
            HTTPClientRequest(url: "http://127.0.0.1:\(fixture.simulatorPort)\(path)"), timeout: .seconds(10))
        #expect(response.status == .ok)
        return Data(try await response.body.collect(upTo: 1 << 20).readableBytesView)
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
