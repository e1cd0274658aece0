import AsyncHTTPClient
import CrestConcurrency
import CrestCore
import Foundation
import Histogram
import NIOCore
import NIOHTTP1
import Synchronization

/// Why a load test could not run (as opposed to an audit that failed, which is in the report).
package struct LoadTestError: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}

/// `crest loadtest`: plays a flash sale against a running Crest, then checks the outcome.
///
/// Phases: the sale (created, or the one given); the load (order attempts from many buyers, closed
/// or open loop, with a share of repeated attempts; with a pay ratio, a share of the accepted
/// orders is paid at the provider meanwhile); with payments, the wait until every unpaid order has
/// expired; the audit, which reads the server's own account of the sale and every accepted order.
package struct LoadTest: Sendable {
    package let plan: LoadPlan
    package let progress: (any LoadProgress)?

    package init(plan: LoadPlan, progress: (any LoadProgress)? = nil) {
        self.plan = plan
        self.progress = progress
    }

    package func run() async throws -> LoadReport {
        if let problem = plan.problem { throw LoadTestError(problem) }
        guard let endpoint = Endpoint(plan.url) else { throw LoadTestError("bad --url \(plan.url)") }
        // Each chosen buyer's checkout waits for its payment on a connection of its own.
        let http = CrestAPI.makeClient(connections: plan.payRatio == nil ? 64 : Self.checkoutConnections)
        do {
            var passes: BuyerPassBook?
            if let secret = plan.buyerPassSecret {
                // Long enough for the load, the payment windows and the settling after them.
                passes = BuyerPassBook(secret: secret, lifetime: .seconds(6 * 3600))
            }
            let api = CrestAPI(http: http, base: endpoint.base, adminToken: plan.adminToken, passes: passes)
            let report = try await run(endpoint, api: api)
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
        let load = LoadRun(
            plan: plan, endpoint: endpoint, saleID: sale.id, passes: api.passes,
            choosePayment: plan.payRatio == nil ? nil : chooser)

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
        let passRefusals = load.tally.withLock { tally in
            tally.outcomes.filter { $0.key.hasPrefix("401 ") || $0.key.hasPrefix("403 ") }
        }
        if !passRefusals.isEmpty {
            let counts = passRefusals.sorted { $0.key < $1.key }.map { "\($0.value) × \($0.key)" }.joined(separator: ", ")
            throw LoadTestError(
                "Crest refused the buyers' passes (\(counts)): give the shop's secret with --buyer-pass-secret, or the --data-dir of a Crest in development mode"
            )
        }
        await resendUnsettled(load, api: api)
        let paid = await payments

        let tally = load.tally.withLock { $0 }
        if let paid {
            try await settle(api: api, sale: sale, tally: tally, loadStart: load.start)
            try await awaitRefunds(of: paid, api: api, sale: sale)
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
            rateLimited: tally.outcomes.filter { $0.key.hasPrefix("429 ") }.values.reduce(0, +),
            overloaded: tally.outcomes.filter { $0.key == "503 overloaded" || $0.key == "503 shed" }.values.reduce(0, +),
            retriedAfterRefusal: tally.retriedAfterRefusal,
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
        let count =
            switch plan.pace {
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

    /// Connections for the chosen buyers' checkouts: past it, they queue (in the order they came).
    static let checkoutConnections = 1_024

    /// Pays each chosen order at the provider. Each chosen buyer goes to its own checkout at once,
    /// as a crowd of buyers would: one whose payment comes late holds up no other (with 32 buyers
    /// at a time, those waiting for their payment kept the rest from paying — on a slow day, most
    /// chosen orders were paid after their window had closed).
    private func pay(_ chosen: AsyncStream<String>, api: CrestAPI) async -> PaymentRun {
        await withTaskGroup(of: (String, PaymentAttempt).self) { group in
            var run = PaymentRun()
            for await id in chosen {
                run.chosen.insert(id)
                group.addTask { (id, await payOne(id, api: api)) }
            }
            for await (id, attempt) in group {
                switch attempt {
                case .paid: run.paid.insert(id)
                case .notPaid(let reason):
                    run.failed.insert(id)
                    run.notPaid[reason, default: 0] += 1
                }
            }
            return run
        }
    }

    /// Plays the buyer at checkout: asks Crest for the order's payment (created then if Crest's job
    /// has not yet: `POST /v1/orders/{id}/payment`), asking again while Crest says to retry, and
    /// pays at the provider at once; says why when it could not.
    private func payOne(_ id: String, api: CrestAPI) async -> PaymentAttempt {
        // A Crest that keeps answering "retry" (its store down) past any payment window.
        let giveUp = ContinuousClock.now + Self.checkoutPatience
        while ContinuousClock.now < giveUp {
            switch try? await api.checkout(id) {
            case .order(let order)?:
                guard let url = order.payment?.payUrl else { return .notPaid(.orderUnreadable) }
                return (try? await api.pay(at: url)) == true ? .paid : .notPaid(.providerRefused)
            case .refused("payment-window-closed")?:
                return .notPaid(.noPaymentInWindow)
            case .refused("order-not-pending")?:
                // Expired before its payment could be made, or ended otherwise.
                let status = (try? await api.order(id))??.status
                return status == "expired" ? .notPaid(.noPaymentInWindow) : .notPaid(.orderClosed)
            case .refused?:
                // Nothing creates it now (a Crest without a provider): wait for it as a page would.
                return await awaitPayment(id, api: api)
            case .retry(let after)?:
                try? await Task.sleep(for: after)
            case nil:
                return .notPaid(.orderUnreadable)
            }
        }
        return .notPaid(.orderUnreadable)
    }

    /// Waits for the order's payment with reads that wait for it, as a page showing the pay link
    /// would, then pays at once; says why when it could not.
    private func awaitPayment(_ id: String, api: CrestAPI) async -> PaymentAttempt {
        while true {
            guard let order = try? await api.order(id, waitingForPayment: 10) else { return .notPaid(.orderUnreadable) }
            if let url = order.payment?.payUrl {
                return (try? await api.pay(at: url)) == true ? .paid : .notPaid(.providerRefused)
            }
            // Expired without a payment, or about to: its window closed first.
            if order.status == "expired" || Date() > order.expiresAt { return .notPaid(.noPaymentInWindow) }
            if order.status != "pending_payment" { return .notPaid(.orderClosed) }
            // A wait may end early without a payment (a stopping server answers at once).
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    /// How long a buyer at checkout asks again while Crest answers "retry".
    static let checkoutPatience = Duration.seconds(900)

    /// Sends every attempt whose fate is unknown (answered 503, or not at all) again with its key:
    /// the answer says whether the first one placed an order. In rounds, pausing longer each time
    /// (up to 4 s) while answers stay unknown, for `plan.resendFor` at most (and 5 s per request);
    /// what is still unknown then, the audit reports.
    private func resendUnsettled(_ load: LoadRun, api: CrestAPI) async {
        let deadline = ContinuousClock.now + plan.resendFor
        var pause = Duration.zero
        while true {
            let unsettled = load.tally.withLock { $0.unsettled }
            guard !unsettled.isEmpty, ContinuousClock.now + pause < deadline else { return }
            try? await Task.sleep(for: pause)
            pause = min(max(pause * 2, .milliseconds(500)), .seconds(4))
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

    /// Waits until every order the run paid after its window had closed is refunded. Crest
    /// refunds such a payment by a job (it is never silently kept); until that job has run,
    /// the order reads `expired` and the audit would call it paid and not refunded. On a machine
    /// behind its work the refunds come tens of seconds after the payments.
    private func awaitRefunds(of run: PaymentRun, api: CrestAPI, sale: CrestAPI.SaleView) async throws {
        let expired = try await api.orders(saleID: sale.id, status: "expired")
        let owed = Set(expired.map(\.id)).intersection(run.paid)
        guard !owed.isEmpty else { return }
        progress?.note("waiting for \(owed.count) payments made after their order's window to be refunded…")
        let left = try await Self.waitWhileOwed(owed, patience: plan.settleGrace, pause: .milliseconds(500)) { ids in
            Set(try await api.orders(ids: ids).filter { $0.value?.status == "expired" }.keys)
        }
        if !left.isEmpty {
            progress?.note(
                "\(left.count) payments made after their order's window still not refunded after \(plan.settleGrace) without one")
        }
    }

    /// Asks `stillOwed` every `pause` which of `owed` are still owed, for as long as some are and
    /// one was settled within the last `patience`; returns those still owed then.
    package static func waitWhileOwed(
        _ owed: Set<String>, patience: Duration, pause: Duration,
        stillOwed: (Set<String>) async throws -> Set<String>
    ) async throws -> Set<String> {
        var owed = owed
        var deadline = ContinuousClock.now + patience
        while !owed.isEmpty, ContinuousClock.now < deadline {
            try await Task.sleep(for: pause)
            let left = try await stillOwed(owed).intersection(owed)
            if left.count < owed.count { deadline = ContinuousClock.now + patience }
            owed = left
        }
        return owed
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
