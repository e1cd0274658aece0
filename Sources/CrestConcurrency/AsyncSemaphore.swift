import Synchronization

/// Lets at most `limit` holders in at once; the others wait their turn, first come first served —
/// those that asked to go ahead first, in the order they came, then the rest.
/// A wait ends with `CancellationError` when its task is cancelled, and gives up its place.
///
/// ```swift
/// try await slots.acquire()
/// defer { slots.release() }
/// ```
package final class AsyncSemaphore: Sendable {
    private typealias Waiter = (id: UInt64, continuation: CheckedContinuation<Void, any Error>)

    /// Waiters in arrival order, from `head` on (taken from the front without moving the rest).
    private struct Line {
        var waiters: [Waiter?] = []
        var head = 0

        mutating func takeFirst() -> CheckedContinuation<Void, any Error>? {
            while head < waiters.count {
                defer { head += 1 }
                if let waiter = waiters[head] {
                    compact()
                    return waiter.continuation
                }
            }
            return nil
        }

        /// Takes the waiter `id` out of the line (its wait was cancelled).
        mutating func remove(_ id: UInt64) -> CheckedContinuation<Void, any Error>? {
            guard let index = waiters[head...].firstIndex(where: { $0?.id == id }) else { return nil }
            defer { waiters[index] = nil }
            return waiters[index]?.continuation
        }

        var count: Int { waiters[head...].lazy.filter { $0 != nil }.count }

        /// Drops the taken and cancelled places once they are most of the array.
        private mutating func compact() {
            guard head > 64, head * 2 > waiters.count else { return }
            waiters.removeFirst(head)
            head = 0
        }
    }

    private struct State {
        var available: Int
        var ahead = Line()
        var waiting = Line()
        var nextID: UInt64 = 0
    }

    package let limit: Int
    private let state: Mutex<State>

    package init(limit: Int) {
        precondition(limit >= 1, "a semaphore needs room for one holder")
        self.limit = limit
        state = Mutex(State(available: limit))
    }

    /// Takes a place, waiting for one if all are held; with `ahead`, before every waiter that did
    /// not ask to go ahead (a buyer at checkout before the background jobs).
    package func acquire(ahead: Bool = false) async throws {
        let id = state.withLock { state -> UInt64? in
            if state.available > 0 {
                state.available -= 1
                return nil
            }
            state.nextID += 1
            return state.nextID
        }
        guard let id else { return }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let cancelled = state.withLock { state -> Bool in
                    // A place freed since the first look is taken at once, as by a waiter.
                    if state.available > 0 {
                        state.available -= 1
                        continuation.resume()
                        return false
                    }
                    // Cancelled before the continuation was queued: the handler found nothing.
                    if Task.isCancelled { return true }
                    if ahead {
                        state.ahead.waiters.append((id, continuation))
                    } else {
                        state.waiting.waiters.append((id, continuation))
                    }
                    return false
                }
                if cancelled { continuation.resume(throwing: CancellationError()) }
            }
        } onCancel: {
            let continuation = state.withLock { state in
                ahead ? state.ahead.remove(id) : state.waiting.remove(id)
            }
            continuation?.resume(throwing: CancellationError())
        }
    }

    /// Gives a place back: to the first waiter, or to the next `acquire`.
    package func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            if let next = state.ahead.takeFirst() ?? state.waiting.takeFirst() { return next }
            state.available += 1
            precondition(state.available <= limit, "released more places than were taken")
            return nil
        }
        next?.resume()
    }

    /// Places free now, and tasks waiting (for tests and metrics).
    package var statistics: (available: Int, waiting: Int) {
        state.withLock { state in (state.available, state.ahead.count + state.waiting.count) }
    }
}
