import CrestCore
import Foundation
import Metrics
import Synchronization

/// How many order attempts may be on the write path at once, and how that number adapts.
package struct WritePathLimitConfiguration: Sendable, Hashable {
    /// The limit at start, and its bounds. The limit never leaves them.
    package var initial = 256
    package var minimum = 16
    package var maximum = 4096
    /// Attempts that may wait for a place when the write path is full; past it, refused at once.
    /// Short on purpose: a waiter the write path cannot reach within `queueTimeout` is refused
    /// after its whole route ran, where one refused at the door costs a fraction of that. Beside
    /// a 1,500-connection crowd, 512 timed out ~20,000 waiters in 10 s and 128 about 600, for the
    /// same goodput and half the admitted orders' median (Benchmarks/RESULTS.md).
    package var queueCapacity = 128
    /// How long an attempt waits for a place before it is refused.
    package var queueTimeout: Duration = .milliseconds(50)
    /// How far the latest commit latency may rise above the long-run average before the limit falls.
    package var tolerance = 1.5
    /// The latency the write path aims under: the long-run average counts as at most this, so a
    /// latency that creeps up with the crowd (bigger batches, each a little slower) still brings
    /// the limit down once past `tolerance ×` it. Set it above the store's own commit time.
    package var targetLatency: Duration = .milliseconds(20)
    /// How much of each new estimate the limit takes (the rest is the old limit).
    package var smoothing = 0.2
    /// The long-run latency averages over about this many samples.
    package var longWindow = 600

    package init() {}

    /// The configuration's problems, for a clear message at start; empty when it is sound.
    package var problems: [String] {
        var problems: [String] = []
        if minimum < 1 { problems.append("the minimum must be at least 1") }
        if maximum < minimum { problems.append("the maximum (\(maximum)) is below the minimum (\(minimum))") }
        if !(minimum...max(minimum, maximum)).contains(initial) {
            problems.append("the initial limit (\(initial)) is outside \(minimum)…\(maximum)")
        }
        if queueCapacity < 0 { problems.append("the queue capacity must not be negative") }
        if queueTimeout < .zero { problems.append("the queue timeout must not be negative") }
        if !(tolerance >= 1) { problems.append("the tolerance must be at least 1") }
        if !(smoothing > 0 && smoothing <= 1) { problems.append("the smoothing must be in (0, 1]") }
        if longWindow < 1 { problems.append("the long window must be at least 1") }
        if targetLatency <= .zero { problems.append("the target latency must be positive") }
        return problems
    }
}

/// The estimate of the write path's limit from the commit latency, as Netflix concurrency-limits'
/// `Gradient2Limit`: the long-run average latency (at most the target) over the latest one is the
/// gradient; below 1 (latency rising: the store is the bottleneck, more in flight only queues) the
/// limit falls, by at most half per sample; at 1 it grows by a small queue allowance (√limit).
///
/// The target is Crest's addition. A group commit's latency grows slowly with its batch, and the
/// long-run average follows it: measured against the average alone, a crowd of 1,500 connections
/// raised the limit to 2,252 and every attempt waited behind the whole crowd (p99 2.3 s,
/// Benchmarks/RESULTS.md). Against the target, the limit settles where the latency is about
/// `tolerance × target`. A pure value, so tests feed it latencies.
package struct GradientLimit: Sendable {
    package private(set) var limit: Double
    private var longLatency: Double = 0
    private var samples = 0
    private let configuration: WritePathLimitConfiguration

    package init(_ configuration: WritePathLimitConfiguration) {
        self.configuration = configuration
        limit = Double(configuration.initial)
    }

    /// Takes one commit's latency, measured while `inFlight` attempts were on the write path.
    package mutating func record(latency: Duration, inFlight: Int) {
        let short = max(latency.seconds, 1e-6)
        samples += 1
        let window = Double(min(samples, configuration.longWindow))
        longLatency += (short - longLatency) / window
        // After a long stretch of slow commits the average lags far behind: bring it down faster.
        if longLatency / short > 2 { longLatency *= 0.95 }
        // An idle write path says nothing about what it could take: do not grow on it.
        guard Double(inFlight) >= limit / 2 else { return }
        let reference = min(longLatency, configuration.targetLatency.seconds)
        let gradient = max(0.5, min(1, configuration.tolerance * reference / short))
        let estimate = limit * gradient + limit.squareRoot()
        let smoothed = limit * (1 - configuration.smoothing) + estimate * configuration.smoothing
        limit = min(Double(configuration.maximum), max(Double(configuration.minimum), smoothed))
    }
}

/// An order attempt refused because the write path is full: `503` with `Retry-After`, and the
/// attempt was not processed (its key is free for a retry).
package struct WritePathFull: Error, Sendable, Hashable {
    package enum Reason: String, Sendable {
        /// More attempts were waiting than the queue holds.
        case queueFull = "queue_full"
        /// The attempt waited its whole deadline for a place.
        case queueTimeout = "queue_timeout"
    }
    package var reason: Reason
    package var retryAfterSeconds = 1

    package init(reason: Reason) { self.reason = reason }
}

/// How busy the write path is, for shedding the minor routes first.
package enum WritePathPressure: Int, Sendable, Comparable {
    /// Places free.
    case none
    /// Full: attempts wait for a place.
    case saturated
    /// Refusing: the queue is full or attempts ran out of time in it (within the last second).
    case refusing

    package static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The adaptive concurrency limit of the write path: an attempt takes a place before the stock
/// gate admits it and gives it back with its answer; commits report their latency, and the limit
/// follows it (`GradientLimit`). Past the limit an attempt waits in a bounded FIFO queue with a
/// short deadline, or is refused at once when the queue is full — never an unbounded queue.
package final class WritePathLimit: Sendable {
    /// A waiter for a place: a suspended task (`acquire()`) or a caller's function
    /// (`acquire(then:)`), ended once with the place or the error that ends its wait.
    private struct Waiter {
        /// On the limit's clock: once it passes, the wait ends with `WritePathFull`.
        var deadline: Date
        var resume: @Sendable (Result<Void, any Error>) -> Void
    }

    private struct State {
        var gradient: GradientLimit
        var inFlight = 0
        var waiters: [UInt64: Waiter] = [:]
        /// The order waiters came in; ids of waiters that left early are skipped.
        var order: [UInt64] = []
        var orderStart = 0
        var nextID: UInt64 = 0
        /// On the limit's clock: "refusing" lasts a second of it.
        var lastRefusal: Date?
        /// Whether a task watches the queue's deadlines (`watchDeadlines()`).
        var watching = false

        var limit: Int { Int(gradient.limit) }

        /// Takes a place when one is free and nobody waits for one (the queue goes first): the
        /// attempts in flight with it, or `nil`, nothing taken.
        mutating func takeFreePlace() -> Int? {
            guard waiters.isEmpty, inFlight < limit else { return nil }
            inFlight += 1
            return inFlight
        }

        /// Puts a waiter at the back of the queue: returns the waiters a free place now goes to
        /// (a place may have come free since the caller's first look), and whether a task must
        /// start to watch the deadlines.
        mutating func enqueue(_ id: UInt64, _ waiter: Waiter) -> (resume: [Waiter], watch: Bool) {
            waiters[id] = waiter
            order.append(id)
            defer { watching = true }
            return (admitWaiters(), !watching)
        }

        /// Takes out the waiters at the head of the queue whose deadline passed at `now`, and
        /// those whose deadline lies over a second beyond `timeout` ahead (the clock went back:
        /// the deadline no longer says when the wait began; a step back of less delays them by at
        /// most that). Returns them, and the deadline of the waiter now at the head — `nil` when
        /// nobody waits, and nobody watches any more.
        mutating func expire(at now: Date, timeout: TimeInterval) -> (expired: [Waiter], next: Date?) {
            var expired: [Waiter] = []
            var next: Date?
            while orderStart < order.count {
                let id = order[orderStart]
                if let waiter = waiters[id] {
                    let remaining = waiter.deadline.timeIntervalSince(now)
                    if remaining > 0, remaining <= timeout + 1 {
                        next = waiter.deadline
                        break
                    }
                    waiters[id] = nil
                    expired.append(waiter)
                }
                orderStart += 1
            }
            if !expired.isEmpty { lastRefusal = now }
            if next == nil { watching = false }
            dropPassed()
            forgetLeavers()
            return (expired, next)
        }

        /// Drops the ids of waiters that left early from `order`: while the write path admits no
        /// one (a store that hangs), only leavers would grow it.
        mutating func forgetLeavers() {
            if waiters.isEmpty {
                order.removeAll(keepingCapacity: true)
                orderStart = 0
            } else if order.count - orderStart > 2 * waiters.count + 1024 {
                order = order[orderStart...].filter { waiters[$0] != nil }
                orderStart = 0
            }
        }

        /// Hands free places to the oldest waiters; returns the ones to resume.
        mutating func admitWaiters() -> [Waiter] {
            var admitted: [Waiter] = []
            while inFlight < limit, orderStart < order.count {
                let id = order[orderStart]
                orderStart += 1
                guard let waiter = waiters.removeValue(forKey: id) else { continue }
                inFlight += 1
                admitted.append(waiter)
            }
            dropPassed()
            return admitted
        }

        /// Drops the ids the queue has passed from the front of `order`, once they are many.
        mutating func dropPassed() {
            if orderStart > 1024, orderStart * 2 > order.count {
                order.removeFirst(orderStart)
                orderStart = 0
            }
        }
    }

    private let state: Mutex<State>
    package let configuration: WritePathLimitConfiguration
    private let clock: any CrestClock
    private let limitGauge = Gauge(label: "crest_write_path_limit")
    private let inFlightGauge = Gauge(label: "crest_write_path_in_flight")
    private let queueWait = Timer(label: "crest_write_path_queue_wait_seconds", preferredDisplayUnit: .seconds)
    private let refusals: [WritePathFull.Reason: Counter] = [
        .queueFull: Counter(label: "crest_write_path_refusals_total", dimensions: [("reason", "queue_full")]),
        .queueTimeout: Counter(label: "crest_write_path_refusals_total", dimensions: [("reason", "queue_timeout")]),
    ]

    /// `clock` times the queue's deadlines and how long the write path counts as refusing (the
    /// commit latency is real time, always).
    package init(_ configuration: WritePathLimitConfiguration, clock: any CrestClock = SystemClock()) {
        precondition(configuration.problems.isEmpty, configuration.problems.joined(separator: "; "))
        self.configuration = configuration
        self.clock = clock
        state = Mutex(State(gradient: GradientLimit(configuration)))
        limitGauge.record(configuration.initial)
    }

    /// The current limit, the attempts on the write path and those waiting for a place.
    package var snapshot: (limit: Int, inFlight: Int, waiting: Int) {
        state.withLock { ($0.limit, $0.inFlight, $0.waiters.count) }
    }

    package var pressure: WritePathPressure {
        state.withLock { state in
            if let last = state.lastRefusal, clock.now().timeIntervalSince(last) < 1 { return .refusing }
            return state.waiters.isEmpty && state.inFlight < state.limit ? .none : .saturated
        }
    }

    /// Takes a place on the write path: at once when one is free, else after waiting in the queue.
    /// Throws `WritePathFull` when the queue is full or the wait passes its deadline.
    package func acquire() async throws {
        enum Entry {
            case admitted(inFlight: Int)
            case refused
            case queued(UInt64)
        }
        let entry = state.withLock { state -> Entry in
            if let inFlight = state.takeFreePlace() { return .admitted(inFlight: inFlight) }
            guard !queueIsFull(state) else {
                state.lastRefusal = clock.now()
                return .refused
            }
            defer { state.nextID += 1 }
            return .queued(state.nextID)
        }
        switch entry {
        case .admitted(let inFlight):
            inFlightGauge.record(inFlight)
        case .refused:
            refusals[.queueFull]?.increment()
            throw WritePathFull(reason: .queueFull)
        case .queued(let id):
            try await wait(id)
        }
    }

    /// Takes a place when one is free and nobody waits for one; `false`, taking nothing,
    /// otherwise. The quick look of `acquire(then:)`'s callers, before they make its function.
    package func tryAcquire() -> Bool {
        guard let inFlight = state.withLock({ $0.takeFreePlace() }) else { return false }
        inFlightGauge.record(inFlight)
        return true
    }

    /// How `acquire(then:)` took a caller.
    package enum Acquisition: Sendable, Equatable {
        /// A place was free: taken.
        case taken
        /// Waiting in the queue: its function is called once, with the place or `WritePathFull`.
        case queued
        /// The queue is full: refused at once, nothing taken.
        case refused(WritePathFull)
    }

    /// `acquire()` for a caller that must not suspend (a channel handler on an event loop): a
    /// place at once when one is free; else a wait in the same queue, with the same deadline —
    /// `granted` is called once, with `.success` when the place is taken (from the thread that gave
    /// one back) or with `WritePathFull` when the wait ran out; `.refused` when the queue is full.
    /// `granted` must be quick: the thread giving back a place runs it.
    package func acquire(then granted: @escaping @Sendable (Result<Void, any Error>) -> Void) -> Acquisition {
        enum Entry {
            case taken(inFlight: Int)
            case refused
            case queued(resume: [Waiter], watch: Bool)
        }
        let enqueued = ContinuousClock.now
        let waiter = Waiter(deadline: deadline()) { [queueWait] result in
            if case .success = result { queueWait.record(duration: ContinuousClock.now - enqueued) }
            granted(result)
        }
        let entry = state.withLock { state -> Entry in
            if let inFlight = state.takeFreePlace() { return .taken(inFlight: inFlight) }
            guard !queueIsFull(state) else {
                state.lastRefusal = clock.now()
                return .refused
            }
            defer { state.nextID += 1 }
            let (resume, watch) = state.enqueue(state.nextID, waiter)
            return .queued(resume: resume, watch: watch)
        }
        switch entry {
        case .taken(let inFlight):
            inFlightGauge.record(inFlight)
            return .taken
        case .refused:
            refusals[.queueFull]?.increment()
            return .refused(WritePathFull(reason: .queueFull))
        case .queued(let resume, let watch):
            if watch { startWatching() }
            for waiter in resume { waiter.resume(.success(())) }
            return .queued
        }
    }

    /// Whether an attempt that finds no free place is refused at once.
    private func queueIsFull(_ state: State) -> Bool {
        state.waiters.count >= configuration.queueCapacity || configuration.queueTimeout <= .zero
    }

    /// Throws `WritePathFull` when `acquire()` would now refuse at once: for the HTTP layer to
    /// refuse an attempt before it reads its body or checks its pass (a crowd's refusals must
    /// cost less than serving it). `acquire()` still decides for those let through.
    package func refuseIfFull() throws {
        let full = state.withLock { state in
            let full = !(state.waiters.isEmpty && state.inFlight < state.limit) && queueIsFull(state)
            if full { state.lastRefusal = clock.now() }
            return full
        }
        guard full else { return }
        refusals[.queueFull]?.increment()
        throw WritePathFull(reason: .queueFull)
    }

    private func wait(_ id: UInt64) async throws {
        let enqueued = ContinuousClock.now
        let deadline = deadline()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let (resume, watch) = state.withLock {
                    $0.enqueue(id, Waiter(deadline: deadline, resume: { continuation.resume(with: $0) }))
                }
                if watch { startWatching() }
                for waiter in resume { waiter.resume(.success(())) }
            }
        } onCancel: {
            leave(id)
        }
        queueWait.record(duration: ContinuousClock.now - enqueued)
    }

    /// The deadline of a wait that begins now.
    private func deadline() -> Date {
        clock.now().addingTimeInterval(configuration.queueTimeout.seconds)
    }

    /// Starts the task that watches the queue's deadlines. Detached: it serves every waiter, not
    /// the caller that happened to start it, and nothing of that caller's (its span) belongs to it.
    private func startWatching() {
        Task.detached { await self.watchDeadlines() }
    }

    /// Ends every wait whose deadline passes, with `WritePathFull`: one task for the whole queue.
    /// The waits share one timeout and leave in the order they came, so the waiter at the head has
    /// the next deadline due: the task sleeps until it, refuses every waiter whose time ran out,
    /// and sleeps again until the new head's; it ends when nobody waits (the next waiter starts
    /// another). A task and a timer for each wait cost a crowd's event loops wake-ups that one
    /// task spares (Benchmarks/RESULTS.md).
    private func watchDeadlines() async {
        let timeout = configuration.queueTimeout.seconds
        while true {
            let (expired, next) = state.withLock { $0.expire(at: clock.now(), timeout: timeout) }
            if !expired.isEmpty {
                refusals[.queueTimeout]?.increment(by: expired.count)
                for waiter in expired { waiter.resume(.failure(WritePathFull(reason: .queueTimeout))) }
            }
            guard let next else { return }
            // Never cancelled (nobody holds the task); a throw could only end the sleep early.
            try? await clock.sleep(until: next)
        }
    }

    /// Takes a cancelled waiter out of the queue, if still there, and ends its wait.
    private func leave(_ id: UInt64) {
        let waiter = state.withLock { state -> Waiter? in
            guard let waiter = state.waiters.removeValue(forKey: id) else { return nil }
            state.forgetLeavers()
            return waiter
        }
        waiter?.resume(.failure(CancellationError()))
    }

    /// Takes the latency of one committed reservation, from its submission to its answer (refusals
    /// answered from memory say nothing of the store's speed and are not recorded).
    package func record(latency: Duration) {
        state.withLock { $0.gradient.record(latency: latency, inFlight: $0.inFlight) }
    }

    /// Gives a place back.
    package func release() {
        let (limit, inFlight, resume) = state.withLock { state in
            precondition(state.inFlight > 0, "a place given back that was never taken")
            state.inFlight -= 1
            let resume = state.admitWaiters()
            return (state.limit, state.inFlight, resume)
        }
        for waiter in resume { waiter.resume(.success(())) }
        limitGauge.record(limit)
        inFlightGauge.record(inFlight)
    }
}
