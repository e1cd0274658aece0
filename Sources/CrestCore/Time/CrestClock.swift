import Foundation
import Synchronization

/// Time for everything in Crest that reads it or waits for it — the job runner's polls, leases
/// and backoffs, the batcher's linger, expiry deadlines — injected, so that tests can move it
/// instead of sleeping (TigerBeetle's time interface, Hummingbird's `MockClock`).
///
/// What measures real work stays on the system's monotonic clock: a handler's timeout, a commit's
/// duration for metrics, a graceful shutdown's grace.
public protocol CrestClock: Sendable {
    /// The wall time now.
    func now() -> Date
    /// Returns once this clock's time has moved `duration` past the call; throws
    /// `CancellationError` if the task is cancelled first.
    func sleep(for duration: Duration) async throws
    /// Returns once this clock reads `deadline` or later; throws `CancellationError` if the task is
    /// cancelled first. A loop that wakes on a schedule sleeps until its next time, not for an
    /// interval: time that moved while it worked counts, and no wake is lost to a late start.
    func sleep(until deadline: Date) async throws
}

extension CrestClock {
    public func sleep(until deadline: Date) async throws {
        let remaining = deadline.timeIntervalSince(now())
        guard remaining > 0 else { return try Task.checkCancellation() }
        try await sleep(for: .seconds(remaining))
    }
}

/// The system's time: `Date()` and `Task.sleep`.
public struct SystemClock: CrestClock {
    public init() {}

    public func now() -> Date { Date() }

    public func sleep(for duration: Duration) async throws { try await Task.sleep(for: duration) }
}

/// Real time that a test can move forward: `now()` is the system's time plus what the test added
/// with `advance(by:)`, and a sleep ends when this clock reaches its deadline — by real time
/// passing, or at once when an advance passes it. Time keeps flowing, so code that polls keeps
/// working; a test that must see an hour pass moves the clock an hour instead of waiting for it.
///
/// ```swift
/// let clock = AdjustableClock()
/// let engine = Engine(store: store, logger: logger, clock: clock)
/// clock.advance(by: .seconds(61))      // the payment window is over: expiry jobs wake and run
/// ```
public final class AdjustableClock: CrestClock {
    private struct Sleeper {
        var deadline: Date
        var continuation: CheckedContinuation<Void, Never>
    }

    private struct State {
        var offset: TimeInterval = 0
        var sleepers: [UInt64: Sleeper] = [:]
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())

    public init() {}

    public func now() -> Date { Date().addingTimeInterval(state.withLock { $0.offset }) }

    /// Moves the clock forward by `duration` and ends every sleep whose deadline it passed.
    public func advance(by duration: Duration) {
        precondition(duration >= .zero, "time only moves forward")
        let due = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.offset += duration.seconds
            let now = Date().addingTimeInterval(state.offset)
            let due = state.sleepers.filter { $0.value.deadline <= now }
            for id in due.keys { state.sleepers[id] = nil }
            return due.map(\.value.continuation)
        }
        for continuation in due { continuation.resume() }
    }

    /// Moves the clock back by `duration`, as a wall clock stepped back by hand or by NTP. A sleep
    /// under way keeps its deadline; it ends when real time has run for as long as it was to
    /// last then (a system clock's sleep is a duration too), or at an advance past its deadline.
    public func stepBack(by duration: Duration) {
        precondition(duration >= .zero, "a step back by a negative duration")
        state.withLock { $0.offset -= duration.seconds }
    }

    /// Sleeps waiting on this clock now, for tests that wait until a loop is asleep.
    public var sleeping: Int { state.withLock { $0.sleepers.count } }

    public func sleep(for duration: Duration) async throws {
        try await sleep(until: now().addingTimeInterval(duration.seconds))
    }

    /// The deadline is fixed before the wait starts: an advance made meanwhile still ends it.
    public func sleep(until deadline: Date) async throws {
        let remaining = deadline.timeIntervalSince(now())
        guard remaining > 0 else { return try Task.checkCancellation() }
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        // Real time alone would end it at the deadline: the offset only grows, so this bounds it.
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await Task.sleep(for: .seconds(remaining)) }
            group.addTask { await self.waitForAdvance(id: id, deadline: deadline) }
            defer { group.cancelAll() }
            try await group.next()
        }
        try Task.checkCancellation()
    }

    private func waitForAdvance(id: UInt64, deadline: Date) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    if Task.isCancelled || deadline <= Date().addingTimeInterval(state.offset) { return true }
                    state.sleepers[id] = Sleeper(deadline: deadline, continuation: continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let sleeper = state.withLock { $0.sleepers.removeValue(forKey: id) }
            sleeper?.continuation.resume()
        }
    }
}
