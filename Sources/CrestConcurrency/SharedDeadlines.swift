import Synchronization

/// Waits for deadlines with one timer for all of them.
///
/// A `Task.sleep` per timeout arms a dispatch timer through libdispatch's manager thread, and
/// cancelling it wakes that thread again. Here a waiter registers its deadline under a lock; a
/// single sleeper task sleeps until the earliest deadline still waited for, and is started again
/// only when a new deadline comes before the one it sleeps for. Deadlines of similar length
/// (every job's timeout, every provider call's) arrive in order, so the sleeper rarely moves.
package final class SharedDeadlines: Sendable {
    package static let shared = SharedDeadlines()

    private enum Entry {
        case registered
        case waiting(CheckedContinuation<Void, Never>)
    }

    private struct State {
        var entries: [UInt64: (deadline: ContinuousClock.Instant, entry: Entry)] = [:]
        /// Min-heap of (deadline, id); ids no longer in `entries` are skipped when they come up.
        var heap: [(deadline: ContinuousClock.Instant, id: UInt64)] = []
        var nextID: UInt64 = 0
        var sleeper: (target: ContinuousClock.Instant, task: Task<Void, Never>)?

        mutating func push(_ item: (deadline: ContinuousClock.Instant, id: UInt64)) {
            heap.append(item)
            var child = heap.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard heap[child].deadline < heap[parent].deadline else { break }
                heap.swapAt(child, parent)
                child = parent
            }
        }

        mutating func pop() {
            heap.swapAt(0, heap.count - 1)
            heap.removeLast()
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < heap.count, heap[left].deadline < heap[smallest].deadline { smallest = left }
                if right < heap.count, heap[right].deadline < heap[smallest].deadline { smallest = right }
                guard smallest != parent else { return }
                heap.swapAt(parent, smallest)
                parent = smallest
            }
        }

        mutating func rebuild() {
            heap = []
            for (id, entry) in entries { push((entry.deadline, id)) }
        }

        /// The earliest deadline still waited for; drops the heap's entries for finished waits.
        mutating func earliest() -> ContinuousClock.Instant? {
            while let top = heap.first {
                if entries[top.id] != nil { return top.deadline }
                pop()
            }
            return nil
        }
    }

    private let state = Mutex(State())

    package init() {}

    /// Waits under way, and the heap's entries (finished ones included until they are dropped).
    package var statistics: (waiting: Int, queued: Int) { state.withLock { ($0.entries.count, $0.heap.count) } }

    /// Returns at `deadline`, or as soon as the calling task is cancelled.
    package func wait(until deadline: ContinuousClock.Instant) async {
        let id = state.withLock { state -> UInt64 in
            state.nextID += 1
            state.entries[state.nextID] = (deadline, .registered)
            state.push((deadline, state.nextID))
            // Finished waits stay in the heap until they come up; behind a long deadline still
            // waited for they would pile up, so the heap is made again from the waits left.
            if state.heap.count > 2 * state.entries.count + 1024 { state.rebuild() }
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let (resumeNow, restart) = state.withLock { state -> (Bool, Bool) in
                    // Cancelled (or already due and fired) before the continuation existed.
                    guard state.entries[id] != nil, !Task.isCancelled else {
                        state.entries[id] = nil
                        return (true, false)
                    }
                    state.entries[id] = (deadline, .waiting(continuation))
                    if let sleeper = state.sleeper, sleeper.target <= deadline { return (false, false) }
                    return (false, true)
                }
                if resumeNow { continuation.resume() }
                if restart { wake() }
            }
        } onCancel: {
            let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
                guard case .waiting(let continuation)? = state.entries.removeValue(forKey: id)?.entry else { return nil }
                return continuation
            }
            continuation?.resume()
        }
    }

    /// Resumes every waiter whose deadline has come, and (re)starts the sleeper for the next.
    private func wake() {
        let due = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            let now = ContinuousClock.now
            var due: [CheckedContinuation<Void, Never>] = []
            while let top = state.heap.first, top.deadline <= now {
                if case .waiting(let continuation)? = state.entries.removeValue(forKey: top.id)?.entry {
                    due.append(continuation)
                }
                state.pop()
            }
            state.sleeper?.task.cancel()
            state.sleeper = nil
            if let next = state.earliest() {
                let task = Task { [weak self] in
                    guard (try? await Task.sleep(until: next, tolerance: .milliseconds(1), clock: .continuous)) != nil else { return }
                    self?.wake()
                }
                state.sleeper = (next, task)
            }
            return due
        }
        for continuation in due { continuation.resume() }
    }
}
