import CrestConcurrency
import CrestCore
import ServiceLifecycle
import Synchronization

/// Reads of an order that may wait for its next change (`GET /v1/orders/{id}?wait=…`): a buyer's
/// checkout waits for the payment Crest creates by a job, with one request held open instead of
/// a read every few hundred milliseconds (a flash sale's crowd of checkouts polling costs the
/// server as much as its orders).
///
/// A reader registers before it reads, so that a change committed between its read and its wait
/// still ends the wait; the committers (transitions, payment records) tell which orders they
/// changed after each commit. Changes committed by another node are not seen here: a wait there
/// ends at its deadline, and the reader reads what the store holds then.
///
/// A wait ends at once on graceful shutdown (the read answered with the order as it is), so that
/// a stopping server does not hold its last requests for their waits: the HTTP server is shut
/// down first and waits for the requests it is answering.
final class OrderWatch: Sendable {
    private enum Entry {
        /// Registered; no change since.
        case armed
        /// A change came after the registration.
        case changed
        case waiting(CheckedContinuation<Void, Never>)
    }

    private struct State {
        var entries: [OrderID: [UInt64: Entry]] = [:]
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())

    /// Readers registered now (for tests).
    var registered: Int { state.withLock { $0.entries.values.reduce(0) { $0 + $1.count } } }

    /// `read`s the order, and again after each change of it committed on this node, for as long as
    /// `waiting` holds for what was read and `deadline` has not come; returns the last read.
    func read<T: Sendable>(
        _ id: OrderID, until deadline: ContinuousClock.Instant, _ read: () async throws -> T,
        while waiting: (T) -> Bool
    ) async throws -> T {
        while true {
            let ticket = register(id)
            defer { forget(id, ticket) }
            let value = try await read()
            guard waiting(value), ContinuousClock.now < deadline, !Task.isCancelled, !Task.isShuttingDownGracefully
            else { return value }
            await withGracefulShutdownHandler {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { await SharedDeadlines.shared.wait(until: deadline) }
                    group.addTask { await self.change(of: id, ticket) }
                    await group.next()
                    group.cancelAll()
                }
            } onGracefulShutdown: {
                self.end(id, ticket)
            }
        }
    }

    /// Ends the waits on `ids` (after a commit that changed them).
    func changed(_ ids: some Sequence<OrderID>) {
        let resumed = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard !state.entries.isEmpty else { return [] }
            var resumed: [CheckedContinuation<Void, Never>] = []
            for id in ids {
                guard var entries = state.entries[id] else { continue }
                for (ticket, entry) in entries {
                    if case .waiting(let continuation) = entry { resumed.append(continuation) }
                    entries[ticket] = .changed
                }
                state.entries[id] = entries
            }
            return resumed
        }
        for continuation in resumed { continuation.resume() }
    }

    /// Ends one wait, as a change would.
    private func end(_ id: OrderID, _ ticket: UInt64) {
        let waiting = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let entry = state.entries[id]?[ticket] else { return nil }
            state.entries[id]?[ticket] = .changed
            if case .waiting(let continuation) = entry { return continuation }
            return nil
        }
        waiting?.resume()
    }

    private func register(_ id: OrderID) -> UInt64 {
        state.withLock { state in
            state.nextID += 1
            state.entries[id, default: [:]][state.nextID] = .armed
            return state.nextID
        }
    }

    private func forget(_ id: OrderID, _ ticket: UInt64) {
        let waiting = state.withLock { state -> CheckedContinuation<Void, Never>? in
            let entry = state.entries[id]?.removeValue(forKey: ticket)
            if state.entries[id]?.isEmpty == true { state.entries[id] = nil }
            if case .waiting(let continuation)? = entry { return continuation }
            return nil
        }
        waiting?.resume()
    }

    /// Returns at the first change of `id` since `ticket` was registered, or on cancellation.
    private func change(of id: OrderID, _ ticket: UInt64) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    guard case .armed? = state.entries[id]?[ticket], !Task.isCancelled else { return true }
                    state.entries[id]?[ticket] = .waiting(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiting = state.withLock { state -> CheckedContinuation<Void, Never>? in
                guard case .waiting(let continuation)? = state.entries[id]?[ticket] else { return nil }
                state.entries[id]?[ticket] = .armed
                return continuation
            }
            waiting?.resume()
        }
    }
}
