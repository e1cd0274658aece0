import CrestCore
import CrestStore
import Foundation
import Metrics
import Synchronization

/// The job runner's metrics: attempts and run time per kind as they happen, and the queue's shape
/// (jobs by kind and state, due jobs, age of the oldest due job) sampled from the store; completed
/// jobs are counted by the attempts' counter, not sampled.
final class JobMetrics: Sendable {
    static let attemptsLabel = "crest_job_attempts_total"

    private let rescued = Counter(label: "crest_jobs_rescued_total")
    private let claimFailures = Counter(label: "crest_job_claim_failures_total")
    private let depth = Gauge(label: "crest_job_queue_depth")
    private let oldestAge = Gauge(label: "crest_job_oldest_due_age_seconds")
    /// Every kind ever published, so a state that emptied is published as 0 rather than kept stale.
    private let publishedKinds = Mutex<Set<String>>([])

    /// Counts one run of a job by how it ended: completed, failed, discarded, snoozed or released.
    func countAttempt(kind: String, outcome: String, duration: Duration) {
        countOutcome(kind: kind, outcome: outcome)
        Timer(label: "crest_job_run_duration_seconds", dimensions: [("kind", kind)], preferredDisplayUnit: .seconds)
            .record(duration: duration)
    }

    /// An attempt's outcome without a run of this process to time (a dead worker's last attempt).
    func countOutcome(kind: String, outcome: String) {
        Counter(label: Self.attemptsLabel, dimensions: [("kind", kind), ("outcome", outcome)]).increment()
    }

    func countRescued(_ count: Int) {
        if count > 0 { rescued.increment(by: count) }
    }

    func countClaimFailure() { claimFailures.increment() }

    func publish(_ statistics: JobStatistics, at now: Date) {
        let kinds = publishedKinds.withLock { kinds in
            kinds.formUnion(statistics.counts.keys)
            return kinds
        }
        for kind in kinds {
            for state in JobStatistics.countedStates {
                Gauge(label: "crest_jobs", dimensions: [("kind", kind), ("state", state.rawValue)])
                    .record(statistics.counts[kind]?[state] ?? 0)
            }
        }
        depth.record(statistics.due)
        oldestAge.record(statistics.oldestDueRunAt.map { max(0, now.timeIntervalSince($0)) } ?? 0)
    }
}
