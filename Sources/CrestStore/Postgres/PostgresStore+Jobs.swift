import CrestCore
import Foundation
import PostgresNIO

/// The job queue on PostgreSQL, shared by every node: claims take rows with
/// `FOR UPDATE SKIP LOCKED`, so two nodes claiming at once take different jobs and neither waits
/// for the other; a lease that ran out (its node died) is rescued by whichever node claims next.
extension PostgresStore {
    public func enqueue(_ jobs: [NewJob], at now: Date) async throws -> [EnqueuedJob] {
        try await transaction { connection in
            var enqueued: [EnqueuedJob] = []
            for job in jobs { enqueued.append(try await PostgresJobs.insert(job, at: now, on: connection, logger: self.logger)) }
            return enqueued
        }
    }

    public func claimJobs(limit: Int, worker: String, lease: Duration, at now: Date) async throws -> JobClaim {
        let nowMillis = PostgresRows.millis(now)
        let leaseUntil = PostgresRows.millis(now.addingTimeInterval(lease.seconds))
        return try await transaction { connection in
            // A running job whose lease ran out lost its worker: retry it, unless that was its last attempt.
            let rescued = try await connection.query(
                """
                UPDATE jobs SET
                    state = CASE WHEN attempt >= max_attempts THEN 'discarded' ELSE 'retryable' END,
                    finalized_at = CASE WHEN attempt >= max_attempts THEN \(nowMillis) END,
                    last_error = \(JobRescue.leaseRanOut),
                    run_at = \(nowMillis), lease_until = NULL, leased_by = NULL
                WHERE id IN (
                    SELECT id FROM jobs WHERE state = 'running' AND lease_until < \(nowMillis) FOR UPDATE SKIP LOCKED)
                RETURNING \(unescaped: PostgresRows.jobColumns)
                """, logger: self.logger
            ).collect().map(PostgresRows.job)
            var jobs = try await connection.query(
                """
                WITH picked AS (
                    SELECT id FROM jobs \(unescaped: Self.dueJobs(at: nowMillis))
                    ORDER BY run_at, id LIMIT \(limit) FOR UPDATE SKIP LOCKED)
                UPDATE jobs SET state = 'running', attempt = attempt + 1, attempted_at = \(nowMillis),
                    lease_until = \(leaseUntil), leased_by = \(worker)
                FROM picked WHERE jobs.id = picked.id
                RETURNING \(unescaped: Self.qualifiedJobColumns)
                """, logger: self.logger
            ).collect().map(PostgresRows.job)
            jobs.sort { ($0.runAt, $0.id) < ($1.runAt, $1.id) }
            let next =
                try await connection.query(
                    "SELECT MIN(run_at) FROM jobs WHERE state IN \(unescaped: Self.waitingStates)", logger: self.logger
                ).values(Int64?.self).first ?? nil
            return JobClaim(
                jobs: jobs, rescued: rescued.count, discarded: rescued.filter { $0.state == .discarded },
                nextRunAt: next.map(PostgresRows.date))
        }
    }

    /// The states of jobs waiting to run: the predicate of the `jobs_waiting` index (migration 4),
    /// which queries must repeat word for word for PostgreSQL to use it.
    static let waitingStates = "('available', 'scheduled', 'retryable')"

    /// The jobs due at `now` (a job made available is due from its `run_at` on too), as a
    /// `WHERE` clause that walks `jobs_waiting` in claim order.
    static func dueJobs(at nowMillis: Int64) -> String {
        "WHERE state IN \(waitingStates) AND (state = 'available' OR run_at <= \(nowMillis))"
    }

    static let qualifiedJobColumns = PostgresRows.jobColumns.split(separator: ",")
        .map { "jobs.\($0.trimmingCharacters(in: .whitespacesAndNewlines))" }.joined(separator: ", ")

    public func extendLeases(worker: String, until: Date) async throws {
        _ = try await rows(
            """
            UPDATE jobs SET lease_until = \(PostgresRows.millis(until)) WHERE state = 'running' AND leased_by = \(worker)
            """)
    }

    public func finishJobs(_ finishes: [JobFinish], at now: Date) async throws {
        let nowMillis = PostgresRows.millis(now)
        try await transaction { connection in
            for finish in finishes {
                let id = finish.lease.id.rawValue
                let attempt = finish.lease.attempt
                let worker = finish.lease.worker
                // The fence: only the claim this finish reports on, if it still holds.
                let query: PostgresQuery
                switch finish.completion {
                case .completed:
                    query = """
                        UPDATE jobs SET state = 'completed', finalized_at = \(nowMillis), lease_until = NULL,
                            leased_by = NULL
                        WHERE id = \(id) AND attempt = \(attempt) AND leased_by = \(worker) AND state = 'running'
                        """
                case .failed(let error, let retryAt?):
                    query = """
                        UPDATE jobs SET state = 'retryable', run_at = \(PostgresRows.millis(retryAt)), last_error = \(error),
                            lease_until = NULL, leased_by = NULL
                        WHERE id = \(id) AND attempt = \(attempt) AND leased_by = \(worker) AND state = 'running'
                        """
                case .failed(let error, nil):
                    query = """
                        UPDATE jobs SET state = 'discarded', finalized_at = \(nowMillis), last_error = \(error),
                            lease_until = NULL, leased_by = NULL
                        WHERE id = \(id) AND attempt = \(attempt) AND leased_by = \(worker) AND state = 'running'
                        """
                case .snoozed(let until):
                    let untilMillis = PostgresRows.millis(until)
                    query = """
                        UPDATE jobs SET state = \(untilMillis > nowMillis ? "scheduled" : "available"),
                            run_at = \(untilMillis), attempt = attempt - 1, lease_until = NULL, leased_by = NULL
                        WHERE id = \(id) AND attempt = \(attempt) AND leased_by = \(worker) AND state = 'running'
                        """
                case .released:
                    query = """
                        UPDATE jobs SET state = 'available', attempt = attempt - 1, lease_until = NULL, leased_by = NULL
                        WHERE id = \(id) AND attempt = \(attempt) AND leased_by = \(worker) AND state = 'running'
                        """
                }
                try await connection.query(query, logger: self.logger)
            }
            // Jobs that will run again: every node may take them when they are due.
            let due = finishes.compactMap { finish -> Date? in
                switch finish.completion {
                case .failed(_, let retryAt?): retryAt
                case .snoozed(let until): until
                case .released: now
                case .completed, .failed(_, nil): nil
                }
            }
            if let first = due.min() {
                try await PostgresNotices.jobsDue(at: first, on: connection, logger: self.logger)
            }
        }
    }

    public func job(_ id: JobID) async throws -> Job? {
        try await rows(
            "SELECT \(unescaped: PostgresRows.jobColumns) FROM jobs WHERE id = \(id.rawValue)"
        ).first.map(PostgresRows.job)
    }

    public func jobs(matching filter: JobFilter, after: JobID?, limit: Int) async throws -> [Job] {
        let state = filter.state?.rawValue
        let query: PostgresQuery = """
            SELECT \(unescaped: PostgresRows.jobColumns) FROM jobs
            WHERE id > \(after?.rawValue ?? 0) AND (\(state)::text IS NULL OR state = \(state))
                AND (\(filter.kind)::text IS NULL OR kind = \(filter.kind))
            ORDER BY id LIMIT \(limit)
            """
        return try await rows(query).map(PostgresRows.job)
    }

    public func retryJob(_ id: JobID, at now: Date) async throws -> Job {
        try await transaction { connection in
            guard
                let job = try await connection.query(
                    "SELECT \(unescaped: PostgresRows.jobColumns) FROM jobs WHERE id = \(id.rawValue) FOR UPDATE",
                    logger: self.logger
                ).collect().first.map(PostgresRows.job)
            else { throw JobError.jobNotFound }
            switch job.state {
            case .discarded, .retryable, .scheduled:
                let retried = try await connection.query(
                    """
                    UPDATE jobs SET state = 'available', run_at = \(PostgresRows.millis(now)), finalized_at = NULL,
                        max_attempts = GREATEST(max_attempts, attempt + 1)
                    WHERE id = \(id.rawValue) RETURNING \(unescaped: PostgresRows.jobColumns)
                    """, logger: self.logger
                ).collect().first.map(PostgresRows.job)
                guard let retried else { throw JobError.jobNotFound }
                try await PostgresNotices.jobsDue(at: now, on: connection, logger: self.logger)
                return retried
            case .available, .running, .completed:
                throw JobError.notRetryable(current: job.state)
            }
        }
    }

    public func jobStatistics(at now: Date) async throws -> JobStatistics {
        try await withConnection { connection in
            var counts: [String: [Job.State: Int]] = [:]
            for try await (kind, state, count) in try await connection.query(
                PostgresQuery(unsafeSQL: JobStatistics.countsSQL), logger: self.logger
            ).decode((String, String, Int64).self) {
                if let state = Job.State(rawValue: state) { counts[kind, default: [:]][state] = Int(count) }
            }
            let nowMillis = PostgresRows.millis(now)
            let due = try await connection.query(
                """
                SELECT COUNT(*), MIN(run_at) FROM jobs \(unescaped: Self.dueJobs(at: nowMillis))
                """, logger: self.logger
            ).decode((Int64, Int64?).self).first(where: { _ in true })
            return JobStatistics(
                counts: counts, due: Int(due?.0 ?? 0), oldestDueRunAt: (due?.1).map(PostgresRows.date))
        }
    }

    public func pruneJobs(completedBefore: Date, discardedBefore: Date) async throws -> Int {
        var deleted = 0
        for (state, before) in [("completed", completedBefore), ("discarded", discardedBefore)] {
            let cutoff = PostgresRows.millis(before)
            deleted += try await rows(
                """
                DELETE FROM jobs WHERE id IN (
                    SELECT id FROM jobs WHERE state = \(state) AND run_at < \(cutoff) AND finalized_at < \(cutoff)
                    LIMIT 10000)
                RETURNING 1
                """
            ).count
        }
        return deleted
    }
}
