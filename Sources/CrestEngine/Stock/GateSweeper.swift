import CrestCore
import Foundation
import Logging
import ServiceLifecycle

/// Drops the stock gates of sales no attempt reached for `idleTimeout`, looking every quarter of it
/// (at least once a minute), so a node that serves sale after sale does not keep each one's
/// memory — refusals, keys, holdings: tens of MB after a big crowd — for as long as it lives.
struct GateSweeper: Service {
    let gates: StockGates
    let idleTimeout: Duration
    let logger: Logger
    let clock: any CrestClock

    func run() async throws {
        guard idleTimeout > .zero else { return }
        let interval = min(idleTimeout / 4, .seconds(60))
        try? await cancelWhenGracefulShutdown {
            while true {
                try await clock.sleep(for: interval)
                let dropped = gates.dropIdle(since: clock.now().addingTimeInterval(-idleTimeout.seconds))
                if !dropped.isEmpty {
                    logger.info("dropped idle stock gates", metadata: ["sales": "\(dropped)"])
                }
            }
        }
    }
}
