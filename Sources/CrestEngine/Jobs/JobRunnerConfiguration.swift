import CrestCore
import Foundation

/// How the job runner claims, runs and retries jobs.
package struct JobRunnerConfiguration: Sendable {
    /// Jobs run at the same time by this runner.
    package var workers: Int
    /// How long a claim lasts without news from its worker; extended every third of it while the
    /// job runs. A job whose worker died runs again once its lease is over.
    package var lease: Duration
    /// Longest time between two looks at the queue when nothing told the runner to look.
    package var pollInterval: Duration
    /// How long after the next scheduled job is due the runner wakes to claim it, so that the jobs
    /// due within this time are claimed, run and recorded together (an expiry per order at a
    /// steady rate would otherwise wake the runner, and sync a claim and an outcome, for each one).
    /// A job enqueued to run now that wakes the runner is claimed this much later too, with those
    /// enqueued meanwhile: the price of the saving is this much latency.
    package var gather: Duration
    /// The gathering `crest serve` and `crest demo` run with. The default here is none: tests that
    /// move an injected clock by hand would otherwise wait on it.
    package static let servedGather: Duration = .milliseconds(20)
    package var backoff: Backoff
    /// On shutdown, how long running jobs may finish before they are cancelled and put back.
    package var shutdownGrace: Duration
    /// How often queue statistics are published as metrics.
    package var statisticsInterval: Duration
    /// Completed jobs are deleted after this long; discarded ones after `discardedRetention`.
    package var completedRetention: Duration
    package var discardedRetention: Duration

    package init(
        workers: Int = 100, lease: Duration = .seconds(30), pollInterval: Duration = .seconds(1), gather: Duration = .zero,
        backoff: Backoff = Backoff(), shutdownGrace: Duration = .seconds(10), statisticsInterval: Duration = .seconds(5),
        completedRetention: Duration = .seconds(24 * 3600), discardedRetention: Duration = .seconds(7 * 24 * 3600)
    ) {
        precondition(workers >= 1, "a job runner needs at least one worker")
        precondition(lease >= .milliseconds(100), "leases shorter than 100 ms cannot be kept")
        self.workers = workers
        self.lease = lease
        self.pollInterval = pollInterval
        self.gather = gather
        self.backoff = backoff
        self.shutdownGrace = shutdownGrace
        self.statisticsInterval = statisticsInterval
        self.completedRetention = completedRetention
        self.discardedRetention = discardedRetention
    }
}

/// Exponential backoff with jitter: after attempt `n`, wait `base × 2ⁿ⁻¹` (at most `maximum`),
/// stretched or shrunk by up to `jitter` of itself at random so that retries of many jobs that
/// failed together do not come back together.
package struct Backoff: Sendable, Hashable {
    package var base: Duration
    package var maximum: Duration
    /// A fraction from 0 to 1.
    package var jitter: Double

    package init(base: Duration = .seconds(1), maximum: Duration = .seconds(3600), jitter: Double = 0.25) {
        precondition((0...1).contains(jitter), "jitter is a fraction from 0 to 1")
        self.base = base
        self.maximum = maximum
        self.jitter = jitter
    }

    /// The wait after failed attempt `attempt` (1-based); `random` is uniform in 0…1.
    package func delay(afterAttempt attempt: Int, random: Double = Double.random(in: 0...1)) -> Duration {
        let exponent = Double(min(max(attempt - 1, 0), 62))
        let plain = min(base.seconds * pow(2, exponent), maximum.seconds)
        return .milliseconds(Int64((plain * (1 + jitter * (2 * random - 1)) * 1000).rounded()))
    }
}
