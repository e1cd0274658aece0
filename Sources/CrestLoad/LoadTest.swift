import AsyncHTTPClient
import CrestConcurrency
import CrestCore
import Foundation
import Histogram
import NIOCore
import NIOHTTP1
import Synchronization

/// Why a load test could not run (as opposed to an audit that failed, which is in the report).
public struct LoadTestError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// `crest loadtest`: plays a flash sale against a running Crest, then checks the outcome.
///
/// Phases: the sale (created, or the one given); the load (order attempts from many buyers, closed
/// or open loop, with a share of repeated attempts; with a pay ratio, a share of the accepted
/// orders is paid at the provider meanwhile); with payments, the wait until every unpaid order has
/// expired; the audit, which reads the server's own account of the sale and every accepted order.
public struct LoadTest: Sendable {
    public let plan: LoadPlan
    public let progress: (any LoadProgress)?

    public init(plan: LoadPlan, progress: (any LoadProgress)? = nil) {
        self.plan = plan
        self.progress = progress
    }

    public func run() async throws -> LoadReport {
        if let problem = plan.problem { throw LoadTestError(problem) }
        guard let endpoint = Endpoint(plan.url) else { throw LoadTestError("bad --url \(plan.url)") }
        let http = CrestAPI.makeClient(connections: 64)
        do {
            let report = try await run(endpoint, api: CrestAPI(http: http, base: endpoint.base, adminToken: plan.adminToken))
            try await http.shutdown()
            return report
        } catch {
            try? await http.shutdown()
            if error is LoadTestError { throw error }
            throw LoadTestError("\(error)")
        }
    }

    private func run(_ endpoint: Endpoint, api: CrestAPI) async throws -> LoadReport {
        // Connections first: a server that is not there is told at once (the API client would
        // retry its connection until its connect timeout).
        let connections = try await openConnections(endpoint)
        let sale: CrestAPI.SaleView
        do {
            if let saleID = plan.saleID {
                sale = try await api.sale(saleID)
            } else {
                sale = try await api.createSale(plan.sale)
                progress?.note("created sale \(sale.id): \(sale.stock.total) units, \(sale.perBuyerLimit) per buyer")
            }
        } catch {
            for connection in connections { await connection.close() }
            throw error
        }
        let (chosen, chooser) = AsyncStream.makeStream(of: String.self)
        let load = LoadRun(plan: plan, endpoint: endpoint, saleID: sale.id, choosePayment: plan.payRatio == nil ? nil : chooser)

        async let payments = plan.payRatio == nil ? nil : pay(chosen, api: api)
        let ticker = Task { await reportProgress(of: load) }
        await withTaskGroup(of: Void.self) { group in
            for (index, connection) in connections.enumerated() {
                let loop = EventLoopTaskExecutor(connection.eventLoop)
                group.addTask(executorPreference: loop) {
                    await load.work(index: index, connection: connection, on: loop)
                }
            }
        }
        let loadEnded = ContinuousClock.now
        ticker.cancel()
        chooser.finish()
        for connection in connections { await connection.close() }
        await resendUnsettled(load, api: api)
        let paid = await payments

        let tally = load.tally.withLock { $0 }
        if paid != nil {
            try await settle(api: api, sale: sale, tally: tally, loadStart: load.start)
        }
        progress?.note("auditing \(tally.accepted.count) accepted orders…")
        let audit = try await Audit(
            api: api, saleID: sale.id, createdStock: plan.saleID == nil ? plan.sale.stock : nil, tally: tally,
            paid: paid
        ).run()
        let elapsed = loadEnded - load.start
        let acceptedSpan = tally.lastAccepted ?? elapsed
        return LoadReport(
            url: endpoint.base, saleId: sale.id, pace: paceDescription, attempts: tally.attempts,
            replays: tally.replays, durationSeconds: elapsed.seconds,
            attemptsPerSecond: Double(tally.attempts) / max(elapsed.seconds, 1e-9), accepted: tally.accepted.count,
            acceptedPerSecond: Double(tally.accepted.count) / max(acceptedSpan.seconds, 1e-9),
            soldOutAfterSeconds: tally.firstSoldOut?.seconds,
            sellOutOrdersPerSecond: tally.firstSoldOut.map { Double(tally.acceptedBeforeSoldOut) / max($0.seconds, 1e-9) },
            outcomes: tally.outcomes, unanswered: tally.unanswered,
            latencyMs: .init(tally.latency), stock: audit.stock, payments: audit.payments, checks: audit.checks,
            auditPassed: audit.checks.allSatisfy(\.passed))
    }

    private var paceDescription: String {
        switch plan.pace {
        case .closed(let concurrency): "closed loop, \(concurrency) concurrent"
        case .open(let rate, let connections):
            "open loop, \(LoadReport.rate(rate))/s over \(connections) connections"
        }
    }

    /// Every connection of the run, opened before the clock starts.
    private func openConnections(_ endpoint: Endpoint) async throws -> [LoadConnection] {
        let count = switch plan.pace {
        case .closed(let concurrency): concurrency
        case .open(_, let connections): connections
        }
        return try await withThrowingTaskGroup(of: LoadConnection.self) { group in
            for _ in 0..<count {
                group.addTask { try await LoadConnection.connect(host: endpoint.host, port: endpoint.port) }
            }
            var opened: [LoadConnection] = []
            do {
                for try await connection in group { opened.append(connection) }
            } catch {
                for connection in opened { await connection.close() }
                throw LoadTestError("cannot connect to \(endpoint.base): \(error)")
            }
            return opened
        }
    }

    private func reportProgress(of load: LoadRun) async {
        guard let progress else { return }
        var previous = (at: load.start, attempts: 0)
        while !Task.isCancelled {
            try? await Task.sleep(for: progress.interval)
            let now = ContinuousClock.now
            let reading = load.tally.withLock { tally in
                let p99 = tally.recent.totalCount > 0 ? Double(tally.recent.valueAtPercentile(99)) / 1000 : 0
                tally.recent.reset()
                return ProgressReading(
                    elapsed: now - load.start, rate: 0, attempts: tally.attempts, accepted: tally.accepted.count,
                    errors: tally.serverErrors + tally.unanswered, recentP99: p99)
            }
            var shown = reading
            shown.rate = Double(reading.attempts - previous.attempts) / max((now - previous.at).seconds, 1e-9)
            previous = (now, reading.attempts)
            progress.reading(shown)
        }
    }

    /// Pays each chosen order at the provider once its payment exists; at most 32 at a time.
    private func pay(_ chosen: AsyncStream<String>, api: CrestAPI) async -> PaymentRun {
        await withTaskGroup(of: (String, PaymentAttempt).self) { group in
            var run = PaymentRun()
            var running = 0
            func record(_ result: (String, PaymentAttempt)) {
                switch result.1 {
                case .paid: run.paid.insert(result.0)
                case .notPaid(let reason):
                    run.failed.insert(result.0)
                    run.notPaid[reason, default: 0] += 1
                }
            }
            for await id in chosen {
                run.chosen.insert(id)
                if running >= 32, let result = await group.next() {
                    record(result)
                    running -= 1
                }
                group.addTask { (id, await payOne(id, api: api)) }
                running += 1
            }
            for await result in group { record(result) }
            return run
        }
    }

    /// Waits for the order's payment (created by Crest's job), then plays the buyer paying; says
    /// why when it could not.
    private func payOne(_ id: String, api: CrestAPI) async -> PaymentAttempt {
        while true {
            guard let order = try? await api.order(id) else { return .notPaid(.orderUnreadable) }
            if let url = order.payment?.payUrl {
                return (try? await api.pay(at: url)) == true ? .paid : .notPaid(.providerRefused)
            }
            // Expired without a payment, or about to: its window closed first.
            if order.status == "expired" || Date() > order.expiresAt { return .notPaid(.noPaymentInWindow) }
            if order.status != "pending_payment" { return .notPaid(.orderClosed) }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Sends every attempt whose fate is unknown (answered 503, or not at all) again with its key:
    /// the answer says whether the first one placed an order. In rounds, pausing longer each time
    /// while answers stay unknown, for 20 s at most (and 5 s per request); what is still unknown
    /// then, the audit reports.
    private func resendUnsettled(_ load: LoadRun, api: CrestAPI) async {
        let deadline = ContinuousClock.now + .seconds(20)
        var pause = Duration.milliseconds(500)
        for round in 1...5 {
            let unsettled = load.tally.withLock { $0.unsettled }
            guard !unsettled.isEmpty, ContinuousClock.now + (round > 1 ? pause : .zero) < deadline else { return }
            if round > 1 {
                try? await Task.sleep(for: pause)
                pause *= 2
            }
            progress?.note("sending \(unsettled.count) attempts again whose fate is unknown (503 or no answer)…")
            let resend: @Sendable (String, UnsettledAttempt) async -> (String, UnsettledAttempt, CrestAPI.Placement) = {
                key, attempt in
                (
                    key, attempt,
                    await api.placeOrder(
                        saleID: load.saleID, key: key, buyer: attempt.buyer, quantity: attempt.quantity, timeout: .seconds(5))
                )
            }
            await withTaskGroup(of: (String, UnsettledAttempt, CrestAPI.Placement).self) { group in
                var iterator = unsettled.makeIterator()
                for _ in 0..<32 {
                    guard let (key, attempt) = iterator.next() else { break }
                    group.addTask { await resend(key, attempt) }
                }
                while let (key, attempt, placement) = await group.next() {
                    load.settle(key, attempt, as: placement)
                    if ContinuousClock.now < deadline, let (key, attempt) = iterator.next() {
                        group.addTask { await resend(key, attempt) }
                    }
                }
            }
        }
    }

    /// Waits until no order of the sale awaits payment any more: paid ones are confirmed, the
    /// others expire at the end of their window (bounded by the window plus the grace).
    private func settle(api: CrestAPI, sale: CrestAPI.SaleView, tally: Tally, loadStart: ContinuousClock.Instant)
        async throws
    {
        let lastOrder = loadStart + (tally.lastAccepted ?? .zero)
        let deadline = lastOrder + .seconds(sale.paymentWindowSeconds) + plan.settleGrace
        progress?.note("waiting for unpaid orders to expire (payment window \(sale.paymentWindowSeconds) s)…")
        while try await api.hasPendingOrders(saleID: sale.id) {
            guard ContinuousClock.now < deadline else {
                progress?.note("orders still pending after the payment window and \(plan.settleGrace) of grace")
                return
            }
            try await Task.sleep(for: .milliseconds(250))
        }
    }
}

/// The orders the run chose to pay, and how that went.
struct PaymentRun: Sendable {
    var chosen: Set<String> = []
    var paid: Set<String> = []
    var failed: Set<String> = []
    /// Why the `failed` ones were not paid.
    var notPaid: [LoadReport.Payments.NotPaid: Int] = [:]
}

/// How paying one chosen order went.
enum PaymentAttempt: Sendable {
    case paid
    case notPaid(LoadReport.Payments.NotPaid)
}

/// The load phase: its workers (one per connection), its schedule and its tally.
final class LoadRun: Sendable {
    let plan: LoadPlan
    let endpoint: Endpoint
    let saleID: String
    let start: ContinuousClock.Instant
    let tally = Mutex(Tally())
    /// Accepted orders chosen for payment go here (with a pay ratio).
    let choosePayment: AsyncStream<String>.Continuation?
    private let next = Atomic<Int>(0)
    private let deadline: ContinuousClock.Instant?
    private let runTag: String
    private let orderPath: String

    init(plan: LoadPlan, endpoint: Endpoint, saleID: String, choosePayment: AsyncStream<String>.Continuation?) {
        self.plan = plan
        self.choosePayment = choosePayment
        self.endpoint = endpoint
        self.saleID = saleID
        let start = ContinuousClock.now
        self.start = start
        deadline = plan.duration.map { start + $0 }
        var random = SystemRandomNumberGenerator()
        runTag = String(random.next() & 0xFFFF_FFFF, radix: 36)
        orderPath = "/v1/sales/\(saleID)/orders"
    }

    private struct Attempt {
        var key: String
        var buyer: String
        var quantity: Int
        var isReplay: Bool
        /// For a replay of an accepted attempt: the order it must answer with.
        var expectedOrder: String?

        /// What the tally keeps while this attempt's fate is unknown.
        var unsettled: UnsettledAttempt { UnsettledAttempt(buyer: buyer, quantity: quantity) }
    }

    /// The next attempt's number and when it is due (open loop), or `nil` when the run is over.
    private func ticket() -> (index: Int, due: ContinuousClock.Instant?)? {
        let index = next.wrappingAdd(1, ordering: .relaxed).oldValue
        if let requests = plan.requests, index >= requests { return nil }
        if case .open(let rate, _) = plan.pace {
            let due = start + .nanoseconds(Int64((Double(index) * 1e9 / rate).rounded()))
            if let deadline, due >= deadline { return nil }
            return (index, due)
        }
        if let deadline, ContinuousClock.now >= deadline { return nil }
        return (index, nil)
    }

    private func attempt(_ index: Int, random: inout SplitMix64) -> Attempt {
        if random.chance(plan.repeatShare) {
            let pick = random.next()
            let candidate = tally.withLock { tally in
                tally.replayPool.isEmpty ? nil : tally.replayPool[Int(pick % UInt64(tally.replayPool.count))]
            }
            if let candidate {
                return Attempt(
                    key: candidate.key, buyer: candidate.buyer, quantity: candidate.quantity, isReplay: true,
                    expectedOrder: candidate.orderID)
            }
        }
        let buyer = "b\(runTag)-\(random.next() % UInt64(plan.buyers))"
        return Attempt(key: "\(runTag)-\(index)", buyer: buyer, quantity: plan.quantity, isReplay: false)
    }

    /// One worker: takes the next attempt, waits until it is due (open loop), sends it, records
    /// the answer; reconnects (on the same loop) after a connection broke or timed out. It runs
    /// on its connection's event loop (started with `loop` as its executor preference).
    func work(index: Int, connection first: LoadConnection, on loop: EventLoopTaskExecutor) async {
        // Seeds from the generator's own output: seeds a fixed step apart would give each worker
        // the same sequence shifted (SplitMix64 steps its state by a constant).
        var seeder = SplitMix64(seed: plan.seed ^ (UInt64(index) << 32))
        var random = SplitMix64(seed: seeder.next())
        var connection: LoadConnection? = first
        let timeout = TimeAmount.nanoseconds(Int64(plan.timeout.seconds * 1e9))
        while !Task.isCancelled, let ticket = ticket() {
            let attempt = attempt(ticket.index, random: &random)
            if let due = ticket.due { await loop.sleep(until: due) }
            let sent = ticket.due ?? .now
            do {
                if connection == nil || connection?.isActive == false {
                    await connection?.close()
                    connection = try await LoadConnection.connect(
                        host: endpoint.host, port: endpoint.port, group: loop.eventLoop)
                }
                let response = try await connection!.send(
                    method: .POST, path: orderPath, headers: [("Idempotency-Key", attempt.key)],
                    json: #"{"buyer":"\#(attempt.buyer)","quantity":\#(attempt.quantity)}"#, timeout: timeout)
                record(attempt, response, latency: .now - sent)
            } catch {
                await connection?.close()
                connection = nil
                recordUnanswered(attempt, error, latency: .now - sent)
            }
        }
        await connection?.close()
    }

    private func record(_ attempt: Attempt, _ response: LoadResponse, latency: Duration) {
        let elapsed = ContinuousClock.now - start
        let orderID = response.status == 201 ? response.location.map(Self.lastSegment) : nil
        let label: String
        if response.status == 201 {
            label = response.replayed ? "201 replayed" : "201"
        } else if let kind = JSONPeek.problemKind(in: response.body) {
            label = "\(response.status) \(kind)"
        } else {
            label = "\(response.status)"
        }
        let chosen = tally.withLock { tally -> Bool in
            tally.attempts += 1
            tally.recordLatency(latency)
            tally.outcomes[label, default: 0] += 1
            if response.status >= 500 { tally.serverErrors += 1 }
            if label.hasSuffix(" sold-out"), tally.firstSoldOut == nil {
                tally.firstSoldOut = elapsed
                tally.acceptedBeforeSoldOut = tally.accepted.count
            }
            // A 5xx (or "in progress") leaves the key's fate unknown, until an answer for the same
            // key tells it.
            if CrestAPI.leavesFateUnknown(status: response.status, problem: label) {
                if !attempt.isReplay || tally.unsettled[attempt.key] != nil {
                    tally.unsettled[attempt.key] = attempt.unsettled
                }
            } else {
                if !tally.unsettled.isEmpty { tally.unsettled[attempt.key] = nil }
                // A repeat's order may be the first news of it (its first attempt was answered 503).
                if attempt.isReplay, let orderID {
                    tally.accept(orderID, key: attempt.key, buyer: attempt.buyer, quantity: attempt.quantity, at: elapsed)
                }
            }
            if attempt.isReplay {
                tally.replays += 1
                if let expected = attempt.expectedOrder, orderID != expected, tally.replayMismatches.count < 1000 {
                    tally.replayMismatches.append(
                        "key \(attempt.key) first created order \(expected), its repeat answered \(label)\(orderID.map { " with order \($0)" } ?? "")"
                    )
                }
                return false
            }
            tally.remember(
                ReplayCandidate(key: attempt.key, buyer: attempt.buyer, quantity: attempt.quantity, orderID: orderID))
            guard let orderID else { return false }
            return tally.accept(orderID, key: attempt.key, buyer: attempt.buyer, quantity: attempt.quantity, at: elapsed)
        }
        if chosen, let choosePayment, let orderID, let ratio = plan.payRatio, Self.chosen(orderID, ratio: ratio) {
            choosePayment.yield(orderID)
        }
    }

    /// `/v1/orders/ID` → `ID`.
    private static func lastSegment(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// What sending an unsettled attempt again told of it.
    func settle(_ key: String, _ attempt: UnsettledAttempt, as placement: CrestAPI.Placement) {
        tally.withLock { tally in
            tally.resent += 1
            switch placement {
            case .unknown:
                break
            case .refused:
                tally.unsettled[key] = nil
            case .order(let id):
                tally.unsettled[key] = nil
                if tally.accept(id, key: key, buyer: attempt.buyer, quantity: attempt.quantity, at: nil) {
                    tally.foundByResending += 1
                }
            }
        }
    }

    private func recordUnanswered(_ attempt: Attempt, _ error: any Error, latency: Duration) {
        let reason = error is LoadConnection.TimedOut ? "unanswered: timeout" : "unanswered: connection"
        tally.withLock { tally in
            tally.attempts += 1
            if attempt.isReplay { tally.replays += 1 }
            tally.unanswered += 1
            if !attempt.isReplay { tally.unsettled[attempt.key] = attempt.unsettled }
            tally.outcomes[reason, default: 0] += 1
            tally.recordLatency(latency)
        }
    }

    /// Whether an accepted order is one the run pays: a stable draw from its id, so the same
    /// orders are chosen whichever worker saw them.
    static func chosen(_ orderID: String, ratio: Double) -> Bool {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in orderID.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        var random = SplitMix64(seed: hash)
        return random.chance(ratio)
    }
}
