import CrestCore
import CrestStore
import Foundation
import Synchronization

/// The stock gates of the sales this process has served, loaded from the store on first use.
///
/// Loading happens once per sale even when a crowd arrives at once: the first request starts the
/// load, the others await the same task.
final class StockGates: Sendable {
    private enum Slot {
        case ready(StockGate)
        case loading(Task<StockGate?, any Error>)
    }

    private let slots = Mutex<[SaleID: Slot]>([:])
    private let store: any Store
    private let refusalMemory: Int
    private let onLoad: @Sendable (StockGate) -> Void
    private let clock: @Sendable () -> Date

    init(
        store: any Store, refusalMemory: Int, clock: @escaping @Sendable () -> Date,
        onLoad: @escaping @Sendable (StockGate) -> Void
    ) {
        self.store = store
        self.refusalMemory = refusalMemory
        self.clock = clock
        self.onLoad = onLoad
    }

    /// The gate of `saleID`, or `nil` when the sale does not exist.
    func gate(for saleID: SaleID) async throws -> StockGate? {
        let slot = slots.withLock { slots -> Slot in
            if let slot = slots[saleID] { return slot }
            let store = self.store
            let refusalMemory = self.refusalMemory
            let clock = self.clock
            let task = Task<StockGate?, any Error> {
                guard let snapshot = try await store.gateSnapshot(for: saleID) else { return nil }
                return StockGate(snapshot: snapshot, refusalMemory: refusalMemory, loadedAt: clock())
            }
            slots[saleID] = .loading(task)
            return .loading(task)
        }
        switch slot {
        case .ready(let gate):
            return gate
        case .loading(let task):
            do {
                let gate = try await task.value
                let (installed, isNew) = slots.withLock { slots -> (StockGate?, Bool) in
                    if case .ready(let ready) = slots[saleID] { return (ready, false) }
                    slots[saleID] = gate.map { .ready($0) }
                    return (gate, gate != nil)
                }
                if isNew, let installed { onLoad(installed) }
                return installed
            } catch {
                forget(saleID)
                throw error
            }
        }
    }

    /// The gate of `saleID` if it is loaded; never touches the store.
    func loadedGate(for saleID: SaleID) -> StockGate? {
        slots.withLock { slots in
            if case .ready(let gate) = slots[saleID] { return gate }
            return nil
        }
    }

    /// The sales whose gates are loaded.
    func loadedSaleIDs() -> [SaleID] {
        slots.withLock { slots in
            slots.compactMap { saleID, slot in
                if case .ready = slot { return saleID }
                return nil
            }
        }
    }

    /// Drops the gates no attempt used since `cutoff` (with none in flight); returns their sales.
    /// A request for one of them loads it again from the store.
    @discardableResult
    func dropIdle(since cutoff: Date) -> [SaleID] {
        slots.withLock { slots in
            let idle = slots.compactMap { saleID, slot -> SaleID? in
                if case .ready(let gate) = slot, gate.isIdle(since: cutoff) { return saleID }
                return nil
            }
            for saleID in idle { slots[saleID] = nil }
            return idle
        }
    }

    /// Drops a gate whose memory can no longer be trusted (a commit failed and its fate is
    /// unknown); the next request loads it again from the store.
    func forget(_ saleID: SaleID) {
        _ = slots.withLock { $0.removeValue(forKey: saleID) }
    }
}
