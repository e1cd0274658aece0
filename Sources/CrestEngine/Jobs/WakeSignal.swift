import CrestCore
import Foundation
import Synchronization

/// Wakes one waiting loop early: `wait(for:on:)` returns on `signal()`, on timeout or on cancellation,
/// whichever comes first. A signal sent while nobody waits is kept for the next wait.
final class WakeSignal: Sendable {
    private struct State {
        var signalled = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    func signal() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.signalled = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// `timeout` is of `clock`'s time: a test that moves the clock ends the wait as time would.
    func wait(for timeout: Duration, on clock: any CrestClock) async {
        guard timeout > .zero else { return }
        await wait(until: clock.now().addingTimeInterval(timeout.seconds), on: clock)
    }

    /// Returns on `signal()`, once `clock` reads `deadline`, or on cancellation.
    func wait(until deadline: Date, on clock: any CrestClock) async {
        guard deadline > clock.now() else { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await clock.sleep(until: deadline) }
            group.addTask { await self.waitForSignal() }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitForSignal() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    if state.signalled || Task.isCancelled {
                        state.signalled = false
                        return true
                    }
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }
}
