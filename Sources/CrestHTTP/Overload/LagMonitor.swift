import CrestCore
import Metrics
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// Measures how late work starts: on each event loop (a task scheduled to run after `interval`
/// that runs later than that) and on Swift's cooperative task pool (a sleep that ends late). A
/// loop or pool kept busy by a crowd shows it here before requests time out; the load shedder
/// refuses minor routes while the lag is past its threshold.
package final class LagMonitor: Service, Sendable {
    private let interval: Duration
    private let loops: [any EventLoop]
    private let latest = Mutex<(eventLoop: Duration, taskPool: Duration)>((.zero, .zero))
    private let eventLoopGauge = Gauge(label: "crest_lag_seconds", dimensions: [("kind", "event_loop")])
    private let taskPoolGauge = Gauge(label: "crest_lag_seconds", dimensions: [("kind", "task_pool")])

    package init(interval: Duration = .milliseconds(100), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.interval = interval
        loops = Array(group.makeIterator())
    }

    /// The worst lag of the last measurement, of the event loops and of the task pool.
    package var lag: Duration {
        let latest = latest.withLock { $0 }
        return max(latest.eventLoop, latest.taskPool)
    }

    /// Measures until the graceful shutdown.
    package func run() async throws {
        // Cancelled by the shutdown, the sleep throws: that is the end, not a failure.
        try? await cancelWhenGracefulShutdown { try await self.measure() }
    }

    private func measure() async throws {
        while !Task.isCancelled {
            let started = ContinuousClock.now
            async let eventLoopLag = measureEventLoops()
            try await Task.sleep(for: interval)
            let taskPool = max(.zero, ContinuousClock.now - started - interval)
            let eventLoop = await eventLoopLag
            latest.withLock { $0 = (eventLoop, taskPool) }
            eventLoopGauge.record(eventLoop.seconds)
            taskPoolGauge.record(taskPool.seconds)
        }
    }

    /// The largest delay past `interval` of a task scheduled on each loop.
    private func measureEventLoops() async -> Duration {
        let interval = TimeAmount(interval)
        let scheduled = ContinuousClock.now
        let runs = loops.map { $0.scheduleTask(in: interval) { ContinuousClock.now }.futureResult }
        var worst = Duration.zero
        for run in runs {
            guard let ran = try? await run.get() else { continue }
            worst = max(worst, ran - scheduled - self.interval)
        }
        return worst
    }
}
