import AsyncHTTPClient
import CrestCore
import CrestTestSupport
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

/// A sale with payments under faults, with `crest serve` killed (`kill -9`) and restarted again
/// and again, then a history check of every promise (`Benchmarks/chaos.sh` runs it at full size,
/// the test suite in short). Crest and `crest psp-sim` run as processes of the `crest` built next
/// to the running executable; buyers, payers, the killer and a merchant endpoint run here.
public struct ChaosRun: Sendable {
    /// `sqlite` or `postgres`.
    public var store = "sqlite"
    /// `kill -9` of `crest serve`, each followed by a restart.
    public var kills = 50
    /// Buyers: one key and one order attempt each.
    public var buyers = 3_000
    public var stock = 2_000
    /// Buyers at the same time.
    public var concurrency = 32
    /// The sale's payment window, seconds.
    public var paymentWindow = 15
    /// Seed of the run's randomness (kill moments, payers, the simulator's faults).
    public var seed: UInt64 = 1
    /// `crest serve --payment-creation`: `order` (a job creates each order's payment; payers wait
    /// for it) or `checkout` (payers ask for it with `POST /v1/orders/{id}/payment`).
    public var paymentCreation = "order"

    public init() {}

    public struct Unavailable: Error, CustomStringConvertible {
        public var description: String
    }

    /// Runs the sale and its kills, then checks; the report lists every count and violation.
    /// The processes it started are killed if it fails half-way.
    public func run() async throws -> Report {
        let launched = Locked<[ChildProcess]>([])
        do {
            return try await run(launched: launched)
        } catch {
            for process in launched.value where process.isRunning { kill(process.processIdentifier, SIGKILL) }
            throw error
        }
    }

    private func run(launched: Locked<[ChildProcess]>) async throws -> Report {
        let work = FileManager.default.temporaryDirectory.appending(path: "crest-chaos-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        var databaseArguments: [String] = []
        var cluster: PostgresCluster?
        if store == "postgres" {
            guard let started = try await PostgresCluster.dedicated(durable: true) else {
                throw Unavailable(description: "PostgreSQL is not available")
            }
            cluster = started
            databaseArguments = ["--database-url", try await started.createDatabase()]
        } else if store != "sqlite" {
            throw Unavailable(description: "the store is sqlite or postgres")
        }
        defer { if let cluster { Task { await cluster.stop() } } }

        let merchant = MerchantEndpoint()
        let merchantPort = try await merchant.start()
        let (crestPort, simulatorPort) = (freeLoopbackPort(), freeLoopbackPort())
        let webhookSecret = "chaos-provider-webhook-secret"
        let simulator = try await Launched(
            [
                "psp-sim", "--host", "127.0.0.1", "--port", "\(simulatorPort)",
                "--webhook-url", "http://127.0.0.1:\(crestPort)/v1/webhooks/provider", "--webhook-secret", webhookSecret,
                "--timeout-rate", "0.2", "--timeout-ms", "1500", "--error-rate", "0.05", "--webhook-duplicate-rate", "0.2",
                "--webhook-reorder-rate", "0.2", "--webhook-drop-rate", "0.1", "--webhook-delay-ms", "50",
                "--seed", "\(seed)", "--log-level", "error",
            ],
            listening: "listening on", registry: launched)
        let serveArguments =
            [
                "serve", "--host", "127.0.0.1", "--port", "\(crestPort)", "--data-dir", work.appending(path: "data").path,
                "--admin-token", Crest.admin, "--buyer-auth", "off", "--buyer-rate", "0",
                "--provider-url", "http://127.0.0.1:\(simulatorPort)", "--provider-webhook-secret", webhookSecret,
                "--provider-timeout-ms", "1000", "--payment-creation", paymentCreation, "--log-level", "error",
            ] + databaseArguments
        var serve = try await Launched(serveArguments, listening: "crest listening on", registry: launched)
        let crest = Crest(port: crestPort, simulatorPort: simulatorPort)
        try await crest.admin(
            .POST, "/v1/webhook-endpoints", ["url": "http://127.0.0.1:\(merchantPort)/hooks", "secret": "chaos-merchant-secret-0123456789"])
        let sale =
            try await crest.admin(
                .POST, "/v1/sales",
                [
                    "sku": "CHAOS", "title": "Chaos sale", "price": ["amount": 100, "currency": "CNY"], "stock": stock,
                    "perBuyerLimit": 1, "paymentWindowSeconds": paymentWindow,
                ])["id"] as? String ?? ""

        // Buyers: each attempt is sent until it gets an answer (a dead server's attempts are sent
        // again with their keys); a placed order is paid by six buyers in ten, one in ten of them
        // after its payment window (a late payment, to be refunded).
        let history = History()
        var random = SeededRandom(seed: seed)
        let payerPlans = (0..<buyers).map { _ in random.next() % 10 }
        // Paced over the killing (about a second per kill), so that kills land on busy moments.
        let start = ContinuousClock.now
        let pace = Double(kills) * 0.9 / Double(buyers)
        let load = Task {
            await concurrently(buyers, width: concurrency) { index in
                try? await Task.sleep(until: start + .seconds(Double(index) * pace))
                let key = "key-\(index)"
                let buyer = "buyer-\(index)"
                let answer = await crest.placeUntilAnswered(sale: sale, key: key, buyer: buyer)
                history.answered(key: key, buyer: buyer, status: answer.status, id: answer.id)
                guard answer.status == 201, let id = answer.id else { return }
                let plan = payerPlans[index]
                guard plan < 6 else { return }
                await crest.pay(
                    order: id, late: plan == 0, atCheckout: paymentCreation == "checkout", window: paymentWindow, history: history)
            }
        }
        // The killer: at random moments while buyers, jobs and webhooks are busy.
        var restartTimes: [Double] = []
        for _ in 0..<kills {
            try await Task.sleep(for: .milliseconds(200 + Int(random.next() % 1_300)))
            await serve.kill()
            let started = ContinuousClock.now
            serve = try await Launched(serveArguments, listening: "crest listening on", registry: launched)
            restartTimes.append((ContinuousClock.now - started).seconds)
        }
        _ = await load.value
        let restarts = restartTimes.sorted()
        let restartLine =
            "kills=\(kills) (\(store), payments created at the \(paymentCreation)) restart to listening: median \(String(format: "%.2f", restarts.isEmpty ? 0 : restarts[restarts.count / 2])) s"

        // Wait out the payment windows (and the late payers), then for the jobs to drain;
        // reconciliation finds what webhooks lost (and heals it); the jobs drain again.
        try await crest.waitUntilSettled(sale: sale, history: history)
        let reconciliation = try await crest.reconcileUntilQuiet(from: history.started)
        try await crest.waitUntilSettled(sale: sale, history: history)
        var report = try await check(crest: crest, sale: sale, history: history, merchant: merchant)
        report.lines.insert(restartLine, at: 0)
        report.lines.append("reconciliation: \(reconciliation.summary)")
        report.count("differences left unresolved", reconciliation.reported, violation: true)
        report.lines.append("violations=\(report.violations)")
        await serve.stop()
        await simulator.stop()
        try await merchant.stop()
        return report
    }

    private func check(crest: Crest, sale: String, history: History, merchant: MerchantEndpoint) async throws -> Report {
        var report = Report()
        let answers = history.answers.value
        let orders = try await crest.orders(sale: sale)
        let byID = Dictionary(orders.map { ($0["id"] as? String ?? "", $0) }, uniquingKeysWith: { a, _ in a })
        let placed = answers.values.filter { $0.status == 201 }
        report.count("attempts answered", answers.count)
        report.count("orders answered 201", placed.count)
        report.count("attempts answered twice with different orders", history.conflicts.value, violation: true)
        report.count("answered 201 and missing", placed.filter { byID[$0.id ?? ""] == nil }.count, violation: true)
        report.count("orders no 201 answered", orders.count - placed.count, violation: true, when: orders.count != placed.count)
        let perBuyer = Dictionary(grouping: orders, by: { $0["buyer"] as? String ?? "" })
        report.count("buyers over their limit", perBuyer.values.filter { $0.count > 1 }.count, violation: true)
        let statuses = Dictionary(grouping: orders, by: { $0["status"] as? String ?? "" }).mapValues(\.count)
        report.lines.append("statuses: \(statuses.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        report.count("orders not final", statuses["pending_payment", default: 0], violation: true)
        let saleNow = try await crest.admin(.GET, "/v1/sales/\(sale)")
        let counters = saleNow["stock"] as? [String: Int] ?? [:]
        let conserved =
            counters["available", default: -1] + counters["reserved", default: -1] + counters["sold", default: -1]
            == counters["total"] && counters["sold"] == statuses["paid", default: 0] && counters["reserved"] == 0
        report.count("counters not conserved", conserved ? 0 : 1, violation: true)
        let paidHere = history.paid.value
        report.count("payments made (succeeded at the provider)", paidHere.count)
        report.count("late payments made", history.late.value.count)
        let unmatched = paidHere.filter { id in !["paid", "refunded"].contains(byID[id]?["status"] as? String ?? "") }
        report.count("succeeded payments neither paid nor refunded", unmatched.count, violation: true)
        // The provider's side, from its statement: each charge's order is paid (and not refunded)
        // or refunded; each paid order charged, each refunded one charged and refunded.
        let statement = try await crest.statement(from: history.started)
        var moneyMismatch = 0
        var keptPerOrder: [String: Int] = [:]
        for (payment, order) in statement.charges where !statement.refunds.contains(payment) {
            keptPerOrder[order, default: 0] += 1
            if byID[order]?["status"] as? String != "paid" { moneyMismatch += 1 }  // money kept for no paid order
        }
        moneyMismatch += keptPerOrder.values.filter { $0 > 1 }.count  // an order paid twice
        for order in orders {
            guard let status = order["status"] as? String, status == "paid" || status == "refunded",
                let payment = (order["payment"] as? [String: Any])?["id"] as? String
            else { continue }
            let charged = statement.charges[payment] != nil
            let refunded = statement.refunds.contains(payment)
            if status == "paid" ? !(charged && !refunded) : !(charged && refunded) { moneyMismatch += 1 }
        }
        report.count("charges at the provider", statement.charges.count)
        report.count("refunds at the provider", statement.refunds.count)
        report.count(
            "money not matched at the provider (kept without a paid order, twice, or not as the order says)", moneyMismatch,
            violation: true)
        let lateNotSettled = history.late.value.filter { !["paid", "refunded"].contains(byID[$0]?["status"] as? String ?? "") }
        report.count("late payments neither kept on a paid order nor refunded", lateNotSettled.count, violation: true)
        // Every event delivered to the merchant at least once, first arrivals in order per order.
        var undelivered = 0
        var outOfOrder = 0
        let received = merchant.firstArrivals()
        for order in orders {
            let id = order["id"] as? String ?? ""
            let events = try await crest.admin(.GET, "/v1/orders/\(id)/events")["events"] as? [[String: Any]] ?? []
            let sequences = events.compactMap { $0["sequence"] as? Int }
            let arrived = received[id] ?? []
            undelivered += sequences.filter { !arrived.contains($0) }.count
            if arrived != arrived.sorted() { outOfOrder += 1 }
        }
        report.count("events not delivered", undelivered, violation: true)
        report.count("orders whose events arrived out of order", outOfOrder, violation: true)
        let audit = try await crest.admin(.GET, "/v1/audit")
        report.count("audit failed", audit["passed"] as? Bool == true ? 0 : 1, violation: true)
        return report
    }
}

/// What the check found, line by line.
public struct Report: Sendable {
    public var lines: [String] = []
    public var violations = 0

    mutating func count(_ what: String, _ value: Int, violation: Bool = false, when: Bool? = nil) {
        let isViolation = violation && (when ?? (value > 0))
        if isViolation { violations += 1 }
        lines.append("\(isViolation ? "VIOLATION " : "")\(what): \(value)")
    }
}

/// Every attempt's answer, and the payments made.
final class History: Sendable {
    struct Answer: Sendable {
        var buyer: String
        var status: Int
        var id: String?
    }

    let answers = Locked<[String: Answer]>([:])
    let conflicts = Locked(0)
    let paid = Locked<Set<String>>([])
    let late = Locked<Set<String>>([])
    /// Before the first payment: reconciliation's window starts here.
    let started = Date().addingTimeInterval(-60)

    func answered(key: String, buyer: String, status: Int, id: String?) {
        answers.withLock { answers in
            if let earlier = answers[key], earlier.status == 201, earlier.id != id { conflicts.withLock { $0 += 1 } }
            answers[key] = Answer(buyer: buyer, status: status, id: id)
        }
    }
}

/// A child process of the build's `crest`, waited for until it listens.
struct Launched {
    let process: ChildProcess

    init(_ arguments: [String], listening: String, registry: Locked<[ChildProcess]>) async throws {
        let (process, output) = CrestCommand.process(arguments)
        try CrestCommand.launch(process)
        self.process = process
        registry.withLock { $0.append(process) }
        do {
            _ = try await CrestCommand.waitUntilListening(process, output: output, prefix: listening)
        } catch let failure as CrestCommand.NotListening {
            throw ChaosRun.Unavailable(description: "crest \(arguments[0]) did not start: \(failure.output.suffix(2_000))")
        }
    }

    func kill() async { await CrestCommand.kill(process) }

    func stop() async { _ = await CrestCommand.stop(process) }
}

/// xorshift64*: the run's moments and choices, reproducible by seed.
struct SeededRandom {
    private var state: UInt64

    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }

    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 2_685_821_657_736_338_717
    }
}
