import DequeModule
import Synchronization

/// At most `limit` holders at once; the others wait their turn in arrival order. A waiter whose
/// task is cancelled stops waiting and gets no permit.
///
/// ```swift
/// guard await permits.acquire() else { return }  // cancelled
/// defer { permits.release() }
/// ```
final class DeliveryPermits: Sendable {
    private struct State {
        var free: Int
        var waiting: Deque<(id: Int, continuation: CheckedContinuation<Bool, Never>)> = []
        var lastID = 0
    }

    let limit: Int
    private let state: Mutex<State>

    init(limit: Int) {
        precondition(limit >= 1, "at least one delivery must be allowed in flight")
        self.limit = limit
        self.state = Mutex(State(free: limit))
    }

    /// Waits for a permit; false when the task was cancelled first.
    func acquire() async -> Bool {
        let id = state.withLock { state in
            state.lastID += 1
            return state.lastID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let granted: Bool? = state.withLock { state in
                    // Checked under the lock: a cancellation that came before the waiter was queued
                    // found nothing to take out.
                    if Task.isCancelled { return false }
                    guard state.free > 0 else {
                        state.waiting.append((id, continuation))
                        return nil
                    }
                    state.free -= 1
                    return true
                }
                if let granted { continuation.resume(returning: granted) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
                state.waiting.firstIndex { $0.id == id }.map { state.waiting.remove(at: $0).continuation }
            }
            waiter?.resume(returning: false)
        }
    }

    /// Gives a permit back: to the longest waiter, if any.
    func release() {
        let next = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            precondition(state.free < limit, "a permit released that was not held")
            // Handed on as it is: the permit stays held, by the waiter now.
            if let waiter = state.waiting.popFirst() { return waiter.continuation }
            state.free += 1
            return nil
        }
        next?.resume(returning: true)
    }
}
