import CrestCore
import CrestStore
import Foundation
import Logging
import ServiceLifecycle

/// Hears what other nodes sharing the store did (`Store.changes()`; the embedded store has no
/// other nodes) and keeps this node in step: jobs another node enqueued wake this node's runner
/// when due, and a sale whose stock another node gave back has its gate's counters read again —
/// a sold-out gate opens.
struct StoreChangeFollower: Service {
    let store: any Store
    let gates: StockGates
    let jobs: JobRunner
    let logger: Logger

    func run() async throws {
        for await change in store.changes().cancelOnGracefulShutdown() {
            switch change {
            case .jobsDue(let at):
                jobs.notify(runAt: at)
            case .stockReleased(let saleID):
                await refresh(saleID)
            case .resynchronize:
                // Announcements may have been missed while the listener was away: claim now, and
                // read every loaded gate's counters again.
                jobs.notify(runAt: .distantPast)
                for saleID in gates.loadedSaleIDs() { await refresh(saleID) }
            }
        }
    }

    private func refresh(_ saleID: SaleID) async {
        guard let gate = gates.loadedGate(for: saleID) else { return }
        do {
            if let counters = try await store.counters(of: saleID) { gate.observe(counters) }
        } catch {
            // The next release or resynchronization reads them again; meanwhile the gate errs on
            // the side of refusing, which the store would decide the same way or better.
            logger.warning(
                "reading a sale's counters after another node's release failed",
                metadata: [
                    "sale": "\(saleID)", "error": "\(error)",
                ])
        }
    }
}
