import AsyncHTTPClient
import CrestCore
import CrestEngine
import CrestPayments
import CrestSimulator
import CrestStore
import CrestTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOHTTP1
import Testing

/// Reconciliation against the simulator, which injects one difference of each kind and keeps the
/// truth of what it did: every difference is found, the safe ones healed, a second run heals nothing.
@Suite("Reconciliation with the provider's statement")
struct ReconciliationTests {
    /// The simulator's kinds, as Crest names what it finds.
    static let found: [ProviderAPI.InjectedDifference.Kind: DifferenceKind] = [
        .webhookLost: .succeededNotRecorded, .duplicateCharge: .duplicateCharge, .failedAfterSuccess: .failedButPaid,
        .refundLost: .refundMissingAtProvider, .orphanCharge: .orphanCharge, .amountDiffers: .amountDiffers,
        .currencyDiffers: .currencyDiffers, .missingFromStatement: .missingFromStatement,
    ]

    @Test("one difference of each kind: all found (and nothing else), the safe ones healed with their record; a second run heals nothing")
    func everyKind() async throws {
        // Only the reconciliation may find the lost success: the first drift check of its order
        // (60 s after the order by default) found it first when a loaded CI run took 148 s here.
        var configuration = PaymentFixture.engineConfiguration
        configuration.expiry.driftCheckFirst = .seconds(86_400)
        try await PaymentFixture.with(engineConfiguration: configuration) { fixture in
            let start = Date().addingTimeInterval(-2)
            let sale = try await fixture.sale(stock: 20)
            func placed(_ buyer: String) async throws -> Order {
                let order = try await fixture.order(sale, buyer: buyer)
                return try await fixture.waitFor(order.id) { $0.payment != nil }
            }
            /// Pays `order` with one fault on, and waits for Crest to reach `status`.
            func pay(_ order: Order, with fault: WritableKeyPath<SimulatorFaults, Double>?, until status: Order.Status) async throws {
                var faults = SimulatorFaults()
                if let fault { faults[keyPath: fault] = 1 }
                fixture.simulator.faults = faults
                try await fixture.pay(order)
                fixture.simulator.faults = SimulatorFaults()
                try await fixture.waitFor(order.id) { $0.status == status }
            }
            let plain = try await placed("plain")
            try await pay(plain, with: nil, until: .paid)
            let lost = try await placed("lost")
            try await pay(lost, with: \.successWebhookLossRate, until: .pendingPayment)
            let failed = try await placed("failed")
            try await pay(failed, with: \.failAfterSuccessRate, until: .paid)
            let amount = try await placed("amount")
            try await pay(amount, with: \.statementAmountRate, until: .paid)
            let currency = try await placed("currency")
            try await pay(currency, with: \.statementCurrencyRate, until: .paid)
            let missing = try await placed("missing")
            try await pay(missing, with: \.statementMissingRate, until: .paid)
            let doubled = try await placed("doubled")
            try await pay(doubled, with: \.duplicateChargeRate, until: .paid)
            let orphaned = try await placed("orphaned")
            try await pay(orphaned, with: \.orphanChargeRate, until: .paid)
            // Cancelled, then paid: Crest refunds it — and the provider loses that refund.
            let late = try await placed("late")
            _ = try await fixture.engine.cancelOrder(late.id)
            var faults = SimulatorFaults()
            faults.refundLossRate = 1
            fixture.simulator.faults = faults
            try await fixture.pay(late)
            try await fixture.waitFor(late.id) { $0.status == .refunded }
            fixture.simulator.faults = SimulatorFaults()
            let truth = fixture.simulator.injected
            #expect(Set(truth.map(\.kind)) == Set(ProviderAPI.InjectedDifference.Kind.allCases), "\(truth)")

            let window = #"{"from":"\#(start.formatted(.iso8601))","to":"\#(Date().addingTimeInterval(2).formatted(.iso8601))"}"#
            let first = try await Self.reconcile(window, on: fixture)
            #expect(first.status == 201)
            let run = try #require(first.json)
            #expect(run["state"] as? String == "finished", "\(run)")
            let id = try #require(run["id"] as? String)
            let items = try await Self.items(of: id, on: fixture)
            let foundKinds = items.map { ($0["kind"] as? String ?? "", $0["paymentId"] as? String ?? "") }
            let expected = truth.map { (Self.found[$0.kind]!.rawValue, $0.paymentId) }
            #expect(Set(foundKinds.map { "\($0.0) \($0.1)" }) == Set(expected.map { "\($0.0) \($0.1)" }), "\(items)")
            let healed = Set(items.filter { $0["resolution"] as? String == "healed" }.compactMap { $0["kind"] as? String })
            #expect(healed == ["succeeded-not-recorded", "duplicate-charge", "orphan-charge", "refund-missing-at-provider"])
            #expect(items.allSatisfy { !($0["before"] as? String ?? "").isEmpty })
            #expect(run["healed"] as? Int == 4 && run["reported"] as? Int == 4 && run["matched"] as? Int == 3, "\(run)")

            // The heals took effect: the lost success is paid; the refunds reach the provider.
            try await fixture.waitFor(lost.id) { $0.status == .paid }
            let refundedAtProvider = try await eventually(timeout: .seconds(60)) {
                truth.filter { [.duplicateCharge, .orphanCharge, .refundLost].contains($0.kind) }.allSatisfy {
                    (try? fixture.simulator.intent($0.paymentId))?.status == .refunded
                }
            }
            #expect(refundedAtProvider)

            let second = try await Self.reconcile(window, on: fixture)
            let again = try #require(second.json)
            #expect(again["healed"] as? Int == 0 && again["healUnderWay"] as? Int == 0, "\(again)")
            #expect(again["reported"] as? Int == 4, "the differences an operator must see are told again")
            // The reported ones wait for an operator: the audit says so until each is resolved.
            let open = try await fixture.engine.audit()
            #expect(open.checks.filter { !$0.passed }.map(\.check) == [.differencesResolved], "\(open.findings)")
            #expect(open.findings.count == 4)
            let secondItems = try await Self.items(of: try #require(again["id"] as? String), on: fixture)
            for item in secondItems where item["resolution"] as? String == "reported" {
                let sequence = try #require(item["sequence"] as? Int)
                let resolved = try await Self.call(
                    .POST, "/v1/reconciliations/\(try #require(again["id"] as? String))/items/\(sequence)/resolution",
                    body: #"{"note":"checked with the provider"}"#, on: fixture)
                #expect(resolved.status == 200)
                let resolution = resolved.json?["operatorResolution"] as? [String: Any]
                #expect(resolution?["note"] as? String == "checked with the provider", "\(resolved)")
            }
            // The first run's items about the same differences show the resolution too.
            let firstItems = try await Self.items(of: id, on: fixture)
            #expect(firstItems.filter { $0["resolution"] as? String == "reported" }.allSatisfy { $0["operatorResolution"] != nil })
            let audit = try await fixture.engine.audit()
            #expect(audit.passed, "\(audit.findings)")
        }
    }

    @Test("the scheduled reconciliation runs every interval on the clock, heals a lost success, and stays one live job")
    func scheduled() async throws {
        let clock = AdjustableClock()
        var configuration = PaymentFixture.engineConfiguration
        configuration.reconcileEvery = .seconds(600)
        configuration.expiry.driftCheckFirst = .seconds(86_400)  // only the reconciliation finds the lost success
        try await PaymentFixture.with(engineConfiguration: configuration, clock: clock) { fixture in
            try await fixture.engine.scheduleReconciliation()
            try await fixture.engine.scheduleReconciliation()  // a second node starting: still one schedule
            let sale = try await fixture.sale()
            let order = try await fixture.waitFor(try await fixture.order(sale, buyer: "ana").id) { $0.payment != nil }
            var faults = SimulatorFaults()
            faults.successWebhookLossRate = 1
            fixture.simulator.faults = faults
            try await fixture.pay(order)
            #expect(try await fixture.engine.order(order.id).status == .pendingPayment)
            for round in 1...2 {
                // The schedule is asleep (snoozed) before the clock moves past its time.
                let asleep = try await eventually(timeout: .seconds(60)) {
                    try await fixture.store.jobs(matching: JobFilter(kind: ReconciliationJobs.schedule.name), after: nil, limit: 1)
                        .first?.state == .scheduled
                }
                #expect(asleep)
                clock.advance(by: .seconds(601))
                let ran = try await eventually(timeout: .seconds(60)) {
                    try await fixture.engine.reconciliationRuns(after: nil, limit: 10).count == round
                }
                #expect(ran, "round \(round): no scheduled run")
            }
            #expect(try await fixture.engine.order(order.id).status == .paid)
            let runs = try await fixture.engine.reconciliationRuns(after: nil, limit: 10)
            #expect(runs.map(\.healed) == [0, 1], "the newest first: healed once, then nothing")
            let schedules = try await fixture.store.jobs(matching: JobFilter(kind: ReconciliationJobs.schedule.name), after: nil, limit: 10)
            #expect(schedules.count == 1 && schedules[0].state.isLive, "\(schedules)")
        }
    }

    @Test("without a payment provider there is nothing to reconcile with: 409 no-payment-provider")
    func noProvider() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let body = #"{"from":"2026-01-01T00:00:00Z","to":"2026-01-02T00:00:00Z"}"#
                try await client.execute(
                    uri: "/v1/reconciliations", method: .post, headers: HTTPFixture.adminHeaders, body: ByteBuffer(string: body)
                ) {
                    $0.expectProblem(.conflict, "no-payment-provider")
                }
            }
        }
    }

    @Test("a bad window is refused with a problem; an unknown run is 404; operators only")
    func badRequests() async throws {
        try await PaymentFixture.with { fixture in
            let backwards = try await Self.reconcile(
                #"{"from":"2026-01-02T00:00:00Z","to":"2026-01-01T00:00:00Z"}"#, on: fixture)
            #expect(backwards.status == 400)
            #expect(try await Self.reconcile(#"{"from":"2026-01-01T00:00:00Z"}"#, on: fixture).status == 400)
            #expect(try await Self.reconcile(#"{"from":"yesterday","to":"today"}"#, on: fixture).status == 400)
            let unknown = try await Self.call(.GET, "/v1/reconciliations/\(ReconciliationRunID.make())", on: fixture)
            #expect(unknown.status == 404)
            #expect(try await Self.call(.GET, "/v1/reconciliations?limit=0", on: fixture).status == 400)
            #expect(try await Self.call(.GET, "/v1/reconciliations", admin: false, on: fixture).status == 401)
        }
    }

    @Test("an operator's resolution: only of a reported difference, once, with a note; bad ones refused with a problem")
    func resolutionRefusals() async throws {
        try await PaymentFixture.with { fixture in
            let start = Date().addingTimeInterval(-2)
            let sale = try await fixture.sale(stock: 5)
            let order = try await fixture.order(sale, buyer: "amount")
            _ = try await fixture.waitFor(order.id) { $0.payment != nil }
            var faults = SimulatorFaults()
            faults.statementAmountRate = 1
            fixture.simulator.faults = faults
            try await fixture.pay(try await fixture.waitFor(order.id) { $0.payment != nil })
            fixture.simulator.faults = SimulatorFaults()
            _ = try await fixture.waitFor(order.id) { $0.status == .paid }
            let window = #"{"from":"\#(start.formatted(.iso8601))","to":"\#(Date().addingTimeInterval(2).formatted(.iso8601))"}"#
            let run = try #require(try await Self.reconcile(window, on: fixture).json)
            let id = try #require(run["id"] as? String)
            let items = try await Self.items(of: id, on: fixture)
            #expect(items.map { $0["kind"] as? String } == ["amount-differs"], "\(items)")
            let path = "/v1/reconciliations/\(id)/items/1/resolution"

            let noNote = try await Self.call(.POST, path, body: "{}", on: fixture)
            #expect(noNote.status == 400 && noNote.json?["type"] as? String == "urn:crest:problem:invalid-request", "\(noNote)")
            #expect(try await Self.call(.POST, path, body: #"{"note":"   "}"#, on: fixture).status == 400)
            let long = String(repeating: "x", count: OperatorResolution.longestNote + 1)
            #expect(try await Self.call(.POST, path, body: #"{"note":"\#(long)"}"#, on: fixture).status == 400)
            #expect(try await Self.call(.POST, path, body: #"{"note":"x"}"#, admin: false, on: fixture).status == 401)
            let missing = try await Self.call(.POST, "/v1/reconciliations/\(id)/items/9/resolution", body: #"{"note":"x"}"#, on: fixture)
            #expect(missing.status == 404 && missing.json?["type"] as? String == "urn:crest:problem:reconciliation-item-not-found")
            #expect(
                try await Self.call(.POST, "/v1/reconciliations/\(id)/items/0/resolution", body: #"{"note":"x"}"#, on: fixture).status
                    == 404)
            #expect(
                try await Self.call(
                    .POST, "/v1/reconciliations/\(ReconciliationRunID.make())/items/1/resolution", body: #"{"note":"x"}"#, on: fixture
                ).status == 404)

            #expect(try await Self.call(.POST, path, body: #"{"note":"the provider will correct it"}"#, on: fixture).status == 200)
            #expect(try await Self.call(.POST, path, body: #"{"note":"the provider will correct it"}"#, on: fixture).status == 200)
            let other = try await Self.call(.POST, path, body: #"{"note":"something else"}"#, on: fixture)
            #expect(other.status == 409 && other.json?["type"] as? String == "urn:crest:problem:reconciliation-item-resolved")
            #expect((other.json?["detail"] as? String)?.contains("the provider will correct it") == true)
        }
    }

    static func reconcile(_ body: String, on fixture: PaymentFixture) async throws -> (status: Int, json: [String: Any]?) {
        try await call(.POST, "/v1/reconciliations", body: body, on: fixture)
    }

    static func items(of id: String, on fixture: PaymentFixture) async throws -> [[String: Any]] {
        try await call(.GET, "/v1/reconciliations/\(id)?limit=200", on: fixture).json?["items"] as? [[String: Any]] ?? []
    }

    static func call(
        _ method: HTTPMethod, _ path: String, body: String? = nil, admin: Bool = true, on fixture: PaymentFixture
    ) async throws -> (status: Int, json: [String: Any]?) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(fixture.crestPort)\(path)")
        request.method = method
        if admin { request.headers.add(name: "Authorization", value: "Bearer \(HTTPFixture.adminToken)") }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await HTTPClient.crest.execute(request, timeout: .seconds(60))
        let data = Data(try await response.body.collect(upTo: 1 << 22).readableBytesView)
        return (Int(response.status.code), (try? JSONSerialization.jsonObject(with: data)) as? [String: Any])
    }
}
