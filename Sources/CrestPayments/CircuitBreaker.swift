import DequeModule
import Synchronization

/// A circuit breaker over a sliding window of the last calls.
///
/// **Closed**: calls go through; each outcome (failed? slow?) enters the window. Once the window
/// holds `minimumCalls` and the share of failed calls reaches `failureRateThreshold`, or the share
/// of slow calls reaches `slowCallRateThreshold`, the breaker **opens**: calls are refused at once
/// for `openDuration`. Then it is **half-open**: `halfOpenProbes` calls go through as probes; once
/// they all reported, it closes (with an empty window) if their failure and slow-call shares are
/// under the thresholds, and opens again otherwise — so a provider that fails a share of calls
/// below the threshold does not keep the circuit open on one unlucky probe.
package final class CircuitBreaker: Sendable {
    package struct Configuration: Sendable, Hashable {
        package var windowSize: Int
        package var minimumCalls: Int
        package var failureRateThreshold: Double
        /// A call slower than this counts as slow (whether it succeeded or not).
        package var slowCallDuration: Duration
        package var slowCallRateThreshold: Double
        package var openDuration: Duration
        package var halfOpenProbes: Int

        package init(
            windowSize: Int = 50, minimumCalls: Int = 20, failureRateThreshold: Double = 0.5,
            slowCallDuration: Duration = .seconds(2), slowCallRateThreshold: Double = 0.8,
            openDuration: Duration = .seconds(5), halfOpenProbes: Int = 5
        ) {
            precondition(windowSize >= 1 && minimumCalls >= 1 && halfOpenProbes >= 1, "breaker sizes must be positive")
            self.windowSize = windowSize
            self.minimumCalls = min(minimumCalls, windowSize)
            self.failureRateThreshold = failureRateThreshold
            self.slowCallDuration = slowCallDuration
            self.slowCallRateThreshold = slowCallRateThreshold
            self.openDuration = openDuration
            self.halfOpenProbes = halfOpenProbes
        }
    }

    package enum State: String, Sendable, Hashable {
        case closed
        case open
        case halfOpen = "half_open"
    }

    /// The breaker at one moment, for operators.
    package struct Snapshot: Sendable, Hashable {
        package var state: State
        package var callsInWindow: Int
        package var failureRate: Double
        package var slowCallRate: Double
        /// Calls refused because the breaker was open (or its probes were taken), since start.
        package var rejected: Int
        /// Times the breaker opened since start.
        package var opened: Int
    }

    /// Refused: the breaker is open.
    package struct OpenError: Error {}

    private struct Outcome {
        var failed: Bool
        var slow: Bool
    }

    private struct Inner {
        var state: State = .closed
        var window: Deque<Outcome> = []
        var openUntil: ContinuousClock.Instant?
        var probesInFlight = 0
        /// Outcomes of this half-open period's probes.
        var probes: [Outcome] = []
        var rejected = 0
        var opened = 0
    }

    package let configuration: Configuration
    private let inner = Mutex(Inner())
    private let onStateChange: @Sendable (State) -> Void

    package init(configuration: Configuration = .init(), onStateChange: @escaping @Sendable (State) -> Void = { _ in }) {
        self.configuration = configuration
        self.onStateChange = onStateChange
    }

    /// Asks to make a call; throws `OpenError` when the breaker refuses it. A permitted call must
    /// report its outcome with `record(failed:duration:)`.
    package func acquire(now: ContinuousClock.Instant = .now) throws(OpenError) {
        let (allowed, changed) = inner.withLock { inner -> (Bool, State?) in
            switch inner.state {
            case .closed:
                return (true, nil)
            case .open:
                guard let until = inner.openUntil, now >= until else {
                    inner.rejected += 1
                    return (false, nil)
                }
                inner.state = .halfOpen
                inner.probesInFlight = 1
                inner.probes = []
                return (true, .halfOpen)
            case .halfOpen:
                guard inner.probesInFlight + inner.probes.count < configuration.halfOpenProbes else {
                    inner.rejected += 1
                    return (false, nil)
                }
                inner.probesInFlight += 1
                return (true, nil)
            }
        }
        if let changed { onStateChange(changed) }
        guard allowed else { throw OpenError() }
    }

    /// Reports how a permitted call went.
    package func record(failed: Bool, duration: Duration, now: ContinuousClock.Instant = .now) {
        let slow = duration > configuration.slowCallDuration
        let changed = inner.withLock { inner -> State? in
            switch inner.state {
            case .closed:
                inner.window.append(Outcome(failed: failed, slow: slow))
                if inner.window.count > configuration.windowSize { inner.window.removeFirst() }
                guard inner.window.count >= configuration.minimumCalls, tripped(inner.window) else { return nil }
                open(&inner, now: now)
                return .open
            case .halfOpen:
                inner.probesInFlight = max(0, inner.probesInFlight - 1)
                inner.probes.append(Outcome(failed: failed, slow: slow))
                guard inner.probes.count >= configuration.halfOpenProbes else { return nil }
                if tripped(inner.probes) {
                    open(&inner, now: now)
                    return .open
                }
                inner.state = .closed
                inner.window.removeAll()
                return .closed
            case .open:
                // A call that started before the breaker opened: its outcome is old news.
                return nil
            }
        }
        if let changed { onStateChange(changed) }
    }

    /// Gives back a permit whose call never started (e.g. a full bulkhead): no outcome is recorded.
    package func release() {
        inner.withLock { inner in
            if inner.state == .halfOpen { inner.probesInFlight = max(0, inner.probesInFlight - 1) }
        }
    }

    package var snapshot: Snapshot {
        inner.withLock { inner in
            let count = inner.window.count
            return Snapshot(
                state: inner.state, callsInWindow: count,
                failureRate: count == 0 ? 0 : Double(inner.window.count(where: \.failed)) / Double(count),
                slowCallRate: count == 0 ? 0 : Double(inner.window.count(where: \.slow)) / Double(count),
                rejected: inner.rejected, opened: inner.opened)
        }
    }

    /// Whether these outcomes reach a threshold.
    private func tripped(_ outcomes: some Collection<Outcome>) -> Bool {
        let count = Double(outcomes.count)
        return Double(outcomes.count(where: \.failed)) / count >= configuration.failureRateThreshold
            || Double(outcomes.count(where: \.slow)) / count >= configuration.slowCallRateThreshold
    }

    private func open(_ inner: inout Inner, now: ContinuousClock.Instant) {
        inner.state = .open
        inner.openUntil = now + configuration.openDuration
        inner.probesInFlight = 0
        inner.probes = []
        inner.opened += 1
    }
}

/// A cap on calls in flight: a call beyond it is refused at once rather than queued.
package final class Bulkhead: Sendable {
    package let limit: Int
    private let state = Mutex((inFlight: 0, rejected: 0))

    /// Refused: `limit` calls are in flight.
    package struct FullError: Error {}

    package init(limit: Int) {
        precondition(limit >= 1, "a bulkhead needs room for one call")
        self.limit = limit
    }

    package func enter() throws(FullError) {
        let entered = state.withLock { state -> Bool in
            guard state.inFlight < limit else {
                state.rejected += 1
                return false
            }
            state.inFlight += 1
            return true
        }
        guard entered else { throw FullError() }
    }

    package func leave() {
        state.withLock { $0.inFlight -= 1 }
    }

    package var inFlight: Int { state.withLock { $0.inFlight } }
    package var rejected: Int { state.withLock { $0.rejected } }
}
