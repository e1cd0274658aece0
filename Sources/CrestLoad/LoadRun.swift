import AsyncHTTPClient
import CrestConcurrency
import CrestCore
import Foundation
import Histogram
import NIOCore
import NIOHTTP1
import Synchronization

/// The load phase: its workers (one per connection), its schedule and its tally.
final class LoadRun: Sendable {
    let plan: LoadPlan
    let endpoint: Endpoint
    let saleID: String
    let start: ContinuousClock.Instant
    let tally = Mutex(Tally())
    /// Accepted orders chosen for payment go here (with a pay ratio).
    let choosePayment: AsyncStream<String>.Continuation?
    /// Each buyer's pass, when Crest wants them.
    let passes: BuyerPassBook?
    private let next = Atomic<Int>(0)
    private let deadline: ContinuousClock.Instant?
    private let runTag: String
    private let orderPath: String

    init(
        plan: LoadPlan, endpoint: Endpoint, saleID: String, passes: BuyerPassBook?,
        choosePayment: AsyncStream<String>.Continuation?
    ) {
        self.plan = plan
        self.passes = passes
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
                var headers = [("Idempotency-Key", attempt.key)]
                if let passes { headers.append(try passes.header(for: attempt.buyer)) }
                var response: LoadResponse
                var sentAt = sent
                while true {
                    response = try await connection!.send(
                        method: .POST, path: orderPath, headers: headers,
                        json: #"{"buyer":"\#(attempt.buyer)","quantity":\#(attempt.quantity)}"#, timeout: timeout)
                    // A refusal for load, told when to come back: a polite client waits and sends
                    // the same attempt again (while the run lasts); each answer is counted.
                    guard plan.retryRefused, let wait = response.retryAfter, isRefusedForLoad(response),
                        deadline.map({ ContinuousClock.now + .seconds(wait) < $0 }) ?? true
                    else { break }
                    record(attempt, response, latency: .now - sentAt, retried: true)
                    await loop.sleep(until: .now + .seconds(wait))
                    sentAt = .now
                }
                record(attempt, response, latency: .now - sentAt)
            } catch {
                await connection?.close()
                connection = nil
                recordUnanswered(attempt, error, latency: .now - sent)
            }
        }
        await connection?.close()
    }

    /// The answer's label: `"201"`, `"201 replayed"`, `"409 sold-out"`, `"503"`.
    private static func label(_ response: LoadResponse) -> String {
        if response.status == 201 { return response.replayed ? "201 replayed" : "201" }
        if let kind = JSONPeek.problemKind(in: response.body) { return "\(response.status) \(kind)" }
        return "\(response.status)"
    }

    private func isRefusedForLoad(_ response: LoadResponse) -> Bool {
        CrestAPI.isRefusedForLoad(Self.label(response))
    }

    /// `retried`: a refusal for load whose attempt is sent again now (counted as an answer, not as
    /// an attempt of its own).
    private func record(_ attempt: Attempt, _ response: LoadResponse, latency: Duration, retried: Bool = false) {
        let elapsed = ContinuousClock.now - start
        let orderID = response.status == 201 ? response.location.map(Self.lastSegment) : nil
        let label = Self.label(response)
        if retried {
            tally.withLock { tally in
                tally.recordLatency(latency)
                tally.outcomes[label, default: 0] += 1
                tally.retriedAfterRefusal += 1
            }
            return
        }
        let chosen = tally.withLock { tally -> Bool in
            tally.attempts += 1
            tally.recordLatency(latency)
            tally.outcomes[label, default: 0] += 1
            if response.status >= 500, !CrestAPI.isRefusedForLoad(label) { tally.serverErrors += 1 }
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
