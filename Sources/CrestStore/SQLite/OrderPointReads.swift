import CrestCore
import GRDB
import Synchronization

/// Reads of one order by id, combined: the reads that arrive while one is under way are read
/// together in the next read transaction, each resumed with its own order.
///
/// A read through the pool on its own is two thread hops and wake-ups (the reader pool, the
/// reader's queue) before SQLite's ~10 µs: a by-id `GET` cost the server 229 µs of CPU under 16
/// connections, `finish_task_switch` alone 17% of it. Orders are read by id all through a sale —
/// a buyer's order and checkout, the jobs, `crest loadtest`'s audit of every order — so when many
/// come at once they share one reader's turn. A round is taken before its read transaction is
/// asked for, so its snapshot comes after every read in it was asked for and a read still sees
/// every commit that came before it (a 201's order, read right after it). One round at a time:
/// every read by id waits for the round before it, a few dozen seeks at most under a crowd.
final class OrderPointReads: Sendable {
    private struct State {
        var waiting: [(OrderID, CheckedContinuation<Order?, any Error>)] = []
        var reading = false
        var rounds = 0
    }

    private let pool: DatabasePool
    private let state = Mutex(State())

    init(pool: DatabasePool) {
        self.pool = pool
    }

    /// Rounds read so far (for tests).
    var rounds: Int { state.withLock { $0.rounds } }

    func order(_ id: OrderID) async throws -> Order? {
        try await withCheckedThrowingContinuation { continuation in
            let starts = state.withLock { state in
                state.waiting.append((id, continuation))
                guard !state.reading else { return false }
                state.reading = true
                return true
            }
            if starts { readRound() }
        }
    }

    /// Takes every read asked for so far and reads them in one read transaction, then starts the
    /// next round if more were asked for meanwhile. The round is taken before the transaction is
    /// asked for: GRDB's first statement in it (`PRAGMA schema_version`) already takes the snapshot.
    private func readRound() {
        let round = state.withLock { state in
            defer { state.waiting.removeAll(keepingCapacity: true) }
            state.rounds += 1
            return state.waiting
        }
        pool.asyncRead { [self] database in
            switch database {
            case .success(let db):
                for (id, continuation) in round {
                    continuation.resume(with: Result { try SQLiteStore.fetchOrder(db, id: id) })
                }
            case .failure(let error):
                for (_, continuation) in round { continuation.resume(throwing: error) }
            }
            let more = state.withLock { state in
                state.reading = !state.waiting.isEmpty
                return state.reading
            }
            if more { readRound() }
        }
    }
}
