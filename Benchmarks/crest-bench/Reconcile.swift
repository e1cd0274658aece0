import ArgumentParser
import AsyncHTTPClient
import CrestCore
import CrestEngine
import CrestHTTP
import CrestPayments
import CrestSimulator
import CrestStore
import CrestTestSupport
import Foundation
import Hummingbird
import Logging
import Prometheus
import ServiceLifecycle

/// Reconciliation against the simulator's truth: Crest and the simulator as HTTP servers on
/// loopback (webhooks and the statement over HTTP), `--orders` orders of which `--pay-ratio` are
/// paid and `--late-ratio` cancelled then paid (refunded by Crest), with every kind of difference
/// injected at `--rate` (refunds lost at `--refund-loss-rate`). The payment janitor is off so that
/// reconciliation alone must find the lost webhooks. Prints what a run found against the truth,
/// its time, a second run, and the audit.
struct Reconcile: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reconcile", abstract: "Reconciliation: differences found against the simulator's truth, and its time.")

    @Option(help: "Orders.") var orders = 20_000
    @Option(help: "Share of orders paid.") var payRatio = 0.7
    @Option(help: "Share of orders cancelled, then paid (refunded by Crest).") var lateRatio = 0.05
    @Option(help: "Rate of each kind of difference per successful payment.") var rate = 0.015
    @Option(help: "Share of refunds the provider loses.") var refundLossRate = 0.3
    @Option(help: "Orders placed at once.") var concurrency = 64
    @Flag(help: "Write both books directly instead of placing and paying each order (for timing 100,000 payments).")
    var seeded = false

    func run() async throws {
        var faults = SimulatorFaults()
        faults.successWebhookLossRate = rate
        faults.failAfterSuccessRate = rate
        faults.statementAmountRate = rate
        faults.statementCurrencyRate = rate
        faults.statementMissingRate = rate
        faults.duplicateChargeRate = rate
        faults.orphanChargeRate = rate
        faults.refundLossRate = refundLossRate
        var configuration = EngineConfiguration()
        configuration.expiry.driftCheckFirst = .seconds(86_400)
        try await PaymentLoop.run(faults: faults, configuration: configuration) { loop in
            let (engine, store, simulator) = (loop.engine, loop.store, loop.simulator)
            let start = Date().addingTimeInterval(-1)
            let sale = try await engine.createSale(
                SaleDraft(
                    sku: "BENCH", title: "Reconciliation benchmark", price: Money(amount: 100, currency: Currency("CNY")!),
                    stock: Int64(orders), paymentWindowSeconds: 3600))
            let placedAt = ContinuousClock.now
            let (placed, paying, late) =
                seeded
                ? try await seed(sale, loop: loop) : try await placeAndPay(sale, loop: loop, start: start)
            let setUp = ContinuousClock.now - placedAt
            // The differences are in; the refunds reconciliation asks for are not lost.
            var settled = simulator.faults
            settled.refundLossRate = 0
            simulator.faults = settled
            let truth = simulator.injected
            let expected = Set(truth.map { "\($0.kind.rawValue) \($0.paymentId)" })

            let clock = ContinuousClock()
            let began = clock.now
            let first = try await engine.reconcile(from: start, to: Date().addingTimeInterval(1))
            let took = clock.now - began
            let items = try await Self.items(of: first.id, engine: engine)
            let found = Set(items.map { "\(Self.injectedKind(of: $0.kind)) \($0.paymentID)" })
            let healedKinds = Dictionary(grouping: items.filter { $0.resolution == .healed }, by: \.kind).mapValues(\.count)
            print(
                "orders=\(placed) paid=\(paying) late=\(late) set_up_s=\(String(format: "%.1f", setUp.seconds)) statement_lines=\(first.lines)"
                    + " injected=\(truth.count) found=\(found.count) missed=\(expected.subtracting(found).count)"
                    + " not_injected=\(found.subtracting(expected).count) healed=\(first.healed) reported=\(first.reported)"
                    + " reconcile_s=\(String(format: "%.2f", took.seconds))")
            let injectedKinds = Dictionary(grouping: truth, by: \.kind).mapValues(\.count)
            print(
                "injected by kind: "
                    + injectedKinds.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue)=\($0.value)" }
                    .joined(separator: " "))
            print(
                "healed by kind: "
                    + healedKinds.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue)=\($0.value)" }.joined(
                        separator: " "))

            // The refunds the heals asked for reach the provider; then nothing is left to heal.
            while try await store.jobs(matching: JobFilter(kind: ReconciliationJobs.refund.name), after: nil, limit: 10_000)
                .contains(where: \.state.isLive)
            {
                try await Task.sleep(for: .milliseconds(200))
            }
            let refundJobs = try await store.jobs(
                matching: JobFilter(kind: ReconciliationJobs.refund.name), after: nil, limit: 100_000)
            let refundStates = Dictionary(grouping: refundJobs, by: \.state.rawValue).mapValues(\.count)
            let extra = truth.filter { $0.kind == .duplicateCharge || $0.kind == .orphanCharge }
            let extraStates = Dictionary(grouping: extra, by: { (try? simulator.intent($0.paymentId))?.status.rawValue ?? "?" })
                .mapValues(\.count)
            print("refund jobs: \(refundStates); extra charges at the provider: \(extraStates)")
            let second = try await engine.reconcile(from: start, to: Date().addingTimeInterval(1))
            // The operator's part: each reported difference checked against the truth, and resolved.
            var resolved = 0
            for item in try await Self.items(of: second.id, engine: engine)
            where item.isOpen && expected.contains("\(Self.injectedKind(of: item.kind)) \(item.paymentID)") {
                _ = try await engine.resolveReconciliationItem(
                    of: second.id, sequence: item.sequence, note: "crest-bench: the simulator injected it")
                resolved += 1
            }
            let audit = try await engine.audit()
            print(
                "second run: healed=\(second.healed) heal_under_way=\(second.underWay) reported=\(second.reported)"
                    + " resolved_by_operator=\(resolved) audit=\(audit.passed ? "passed" : "failed \(audit.findings.prefix(3))")")
        }
    }

    /// Orders placed on the engine, their payments created by Crest's jobs over HTTP, paid at the
    /// simulator and told to Crest by webhook — the whole path, a few hundred orders a second.
    /// Returns the orders placed, paid, and cancelled then paid.
    func placeAndPay(_ sale: Sale, loop: PaymentLoop, start: Date) async throws -> (Int, Int, Int) {
        let (engine, store, simulator, dispatcher) = (loop.engine, loop.store, loop.simulator, loop.dispatcher)
        let placed: [OrderID?] = await concurrently(orders, width: concurrency) { index in
            try? await engine.placeOrder(
                OrderRequest(saleID: sale.id, idempotencyKey: "k\(index)", buyer: "b\(index)", quantity: 1)
            ).order.id
        }
        let ids = placed.compactMap { $0 }
        // Every order's payment exists at the provider.
        var withPayment: [Order] = []
        while true {
            withPayment = try await store.ordersWithPayment(createdFrom: start, to: Date().addingTimeInterval(1))
            if withPayment.count >= ids.count { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        let paying = Int(Double(ids.count) * payRatio)
        let late = Int(Double(ids.count) * lateRatio)
        let toPay = withPayment.prefix(paying + late).compactMap(\.payment?.id)
        for order in withPayment.prefix(paying + late).suffix(late) { _ = try await engine.cancelOrder(order.id) }
        _ = await concurrently(toPay.count, width: concurrency) { index in
            try? simulator.simulate(toPay[index], outcome: .succeeded)
        }
        // Settled: every webhook delivered or given up (Crest refuses those about a refunded
        // extra charge: not the order's payment), no refund or payment job left to run.
        while true {
            try await Task.sleep(for: .milliseconds(500))
            let webhooks = dispatcher.statistics
            // Expiries and payment checks wait in `scheduled` for an hour and a day.
            let busy = try await store.jobs(matching: JobFilter(), after: nil, limit: 100_000).contains {
                $0.state.isLive && $0.state != .scheduled
            }
            if webhooks.delivered + webhooks.givenUp >= webhooks.emitted, !busy { break }
        }
        return (ids.count, paying, late)
    }

    /// Crest's books and the provider's written directly, as the whole path would leave them:
    /// orders reserved in batches; their payments created and, for `--pay-ratio` of them, settled
    /// at the simulator in this process (each success drawing its differences); what the webhooks
    /// would have told Crest recorded in batches (nothing for a lost one). Thousands of orders a
    /// second where the whole path makes hundreds: for timing a run over 100,000 payments. No
    /// webhook is sent while seeding; none is cancelled then paid.
    func seed(_ sale: Sale, loop: PaymentLoop) async throws -> (Int, Int, Int) {
        let (store, simulator) = (loop.store, loop.simulator)
        loop.dispatcher.setTarget(nil)
        defer { loop.dispatcher.setTarget(loop.webhookTarget) }
        let paying = Int(Double(orders) * payRatio)
        var placed = 0
        for first in stride(from: 0, to: orders, by: 1000) {
            let now = Date()
            let expiresAt = sale.paymentDeadline(from: now)
            let reservations = (first..<min(first + 1000, orders)).map { index in
                let id = OrderID.make(now: now)
                return Reservation(
                    orderID: id,
                    request: OrderRequest(saleID: sale.id, idempotencyKey: "k\(index)", buyer: "b\(index)", quantity: 1),
                    amount: sale.price, createdAt: now, expiresAt: expiresAt, jobs: [OrderJobs.expiry(of: id, at: expiresAt)])
            }
            let created = try await store.reserve(reservations).outcomes.compactMap { outcome -> Order? in
                if case .reserved(let order) = outcome { order } else { nil }
            }
            var payments: [(OrderID, String, paid: Bool)] = []
            for order in created {
                let intent = try simulator.create(
                    .init(amount: order.amount.amount, currency: order.amount.currency.code, reference: order.id.description),
                    key: "create-\(order.id)")
                let paid = placed < paying
                if paid { _ = try simulator.simulate(intent.id, outcome: .succeeded) }
                payments.append((order.id, intent.id, paid))
                placed += 1
            }
            let lost = Set(simulator.injected.filter { $0.kind == .webhookLost }.map(\.paymentId))
            _ = try await store.recordPayments(
                payments.map { order, payment, paid in
                    PaymentObservation(
                        orderID: order,
                        payment: OrderPayment(id: payment, status: paid && !lost.contains(payment) ? .succeeded : .created, payURL: nil))
                }, at: Date())
        }
        return (placed, paying, 0)
    }

    /// What the simulator calls the difference Crest found (a failure after success is
    /// failed-but-paid on a paid order, failed-not-recorded on an ended one).
    static func injectedKind(of kind: DifferenceKind) -> String {
        switch kind {
        case .succeededNotRecorded: "webhook-lost"
        case .duplicateCharge: "duplicate-charge"
        case .failedButPaid, .failedNotRecorded: "failed-after-success"
        case .refundMissingAtProvider: "refund-lost"
        case .orphanCharge: "orphan-charge"
        case .amountDiffers: "amount-differs"
        case .currencyDiffers: "currency-differs"
        case .missingFromStatement: "missing-from-statement"
        case .refundNotRecorded, .refundedButPaid: kind.rawValue
        }
    }

    static func items(of id: ReconciliationRunID, engine: Engine) async throws -> [ReconciliationItem] {
        var items: [ReconciliationItem] = []
        var after: Int?
        while true {
            let page = try await engine.reconciliationItems(of: id, after: after, limit: 10_000)
            items += page
            guard let last = page.last, page.count == 10_000 else { return items }
            after = last.sequence
        }
    }
}
