import CrestCore
import Foundation

/// The durable job queue, part of every `Store` so that a change and the jobs it needs commit in
/// one transaction (see `Reservation.jobs`).
///
/// Workers claim jobs with a lease, extend it while they run and report how each run ended; a job
/// whose lease ran out is rescued by the next claim. Every write that concerns a claimed job
/// carries its `JobLease` and is ignored once the job no longer carries that lease.
public protocol JobQueue: Sendable {
    /// Enqueues jobs in one transaction. A job whose unique key names a live job is not added;
    /// its entry tells which job holds the key.
    func enqueue(_ jobs: [NewJob], at now: Date) async throws -> [EnqueuedJob]

    /// In one transaction: rescues running jobs whose lease ended before `now`, makes due scheduled
    /// and retryable jobs available, and claims up to `limit` available jobs (oldest run-at first)
    /// for `worker` until `now + lease`.
    func claimJobs(limit: Int, worker: String, lease: Duration, at now: Date) async throws -> JobClaim

    /// Moves the lease of every job `worker` is running to `until`.
    func extendLeases(worker: String, until: Date) async throws

    /// Records how claimed jobs ended, in one transaction. Finishes whose lease the job no longer
    /// carries are ignored.
    func finishJobs(_ finishes: [JobFinish], at now: Date) async throws

    func job(_ id: JobID) async throws -> Job?

    /// Jobs in id order after `after`, filtered.
    func jobs(matching filter: JobFilter, after: JobID?, limit: Int) async throws -> [Job]

    /// Makes a discarded, retryable or scheduled job available now; a discarded job gets one more
    /// attempt. Throws `JobError`.
    func retryJob(_ id: JobID, at now: Date) async throws -> Job

    /// Counts by kind and state, and what is waiting, for metrics.
    func jobStatistics(at now: Date) async throws -> JobStatistics

    /// Deletes completed jobs finished before `completedBefore` and discarded ones finished before
    /// `discardedBefore`; returns how many.
    func pruneJobs(completedBefore: Date, discardedBefore: Date) async throws -> Int
}

/// A job as enqueued: its id, and whether it is a job that already held the unique key.
public struct EnqueuedJob: Sendable, Hashable {
    public var id: JobID
    /// `true` when a live job with the same unique key existed and nothing was added.
    public var duplicate: Bool

    public init(id: JobID, duplicate: Bool) {
        self.id = id
        self.duplicate = duplicate
    }
}

/// What one claim got.
public struct JobClaim: Sendable {
    public var jobs: [Job]
    /// Running jobs whose lease had run out and were made retryable (or discarded) again.
    public var rescued: Int
    /// The rescued jobs whose lease ran out on their last attempt, discarded by this claim: what
    /// their kind does when a job is given up (its handler's `discarded` hook) is the claimer's
    /// to do, as it is for a job that failed its last attempt.
    public var discarded: [Job]
    /// The earliest run-at of the jobs still waiting, if any: when a worker should look again.
    public var nextRunAt: Date?

    public init(jobs: [Job], rescued: Int, discarded: [Job] = [], nextRunAt: Date?) {
        self.jobs = jobs
        self.rescued = rescued
        self.discarded = discarded
        self.nextRunAt = nextRunAt
    }
}

/// Which jobs an operator listing shows.
public struct JobFilter: Sendable, Hashable {
    public var state: Job.State?
    public var kind: String?

    public init(state: Job.State? = nil, kind: String? = nil) {
        self.state = state
        self.kind = kind
    }
}

/// The queue at a glance.
public struct JobStatistics: Sendable, Hashable {
    /// Jobs by kind, then state, for the `countedStates`.
    public var counts: [String: [Job.State: Int]]
    /// Jobs that could run now: available, or scheduled/retryable with their run-at passed.
    public var due: Int
    /// The run-at of the longest-waiting due job.
    public var oldestDueRunAt: Date?

    public init(counts: [String: [Job.State: Int]], due: Int, oldestDueRunAt: Date?) {
        self.counts = counts
        self.due = due
        self.oldestDueRunAt = oldestDueRunAt
    }

    /// Every state but `completed`. Completed jobs are kept for a day and would be most of the
    /// table after a sale (650,000 rows took PostgreSQL 140–190 ms to count, every few seconds on
    /// every node); they are counted as they finish instead (`crest_job_attempts_total`).
    public static let countedStates = Job.State.allCases.filter { $0 != .completed }

    /// The counts' query, the same SQL for both stores; an index on `(state, kind)` answers it
    /// without reading completed jobs.
    static let countsSQL = """
        SELECT kind, state, COUNT(*) AS n FROM jobs
        WHERE state IN (\(countedStates.map { "'\($0.rawValue)'" }.joined(separator: ", ")))
        GROUP BY state, kind
        """
}

/// What a rescue writes on the jobs it takes back.
enum JobRescue {
    /// The error recorded on a job whose lease ran out.
    static let leaseRanOut = "the lease ran out before the job finished (its worker stopped)"
}
