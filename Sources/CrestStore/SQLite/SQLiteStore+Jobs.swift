import CrestCore
import Foundation
import GRDB

/// The job queue on the embedded store. SQLite has one writer, so a claim is simply a write
/// transaction: no two workers can take the same job.
extension SQLiteStore {
    public func enqueue(_ jobs: [NewJob], at now: Date) async throws -> [EnqueuedJob] {
        try await pool.write { db in
            try jobs.map { try SQLiteJobs.insert(db, $0, at: now) }
        }
    }

    public func claimJobs(limit: Int, worker: String, lease: Duration, at now: Date) async throws -> JobClaim {
        let nowMillis = SQLiteRows.millis(now)
        let leaseUntil = SQLiteRows.millis(now.addingTimeInterval(lease.seconds))
        return try await pool.write { db in
            // A running job whose lease ran out lost its worker: retry it, unless that was its last attempt.
            let rescued = try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        UPDATE jobs SET
                            state = CASE WHEN attempt >= max_attempts THEN 'discarded' ELSE 'retryable' END,
                            finalized_at = CASE WHEN attempt >= max_attempts THEN ?1 END,
                            last_error = ?2,
                            run_at = ?1, lease_until = NULL, leased_by = NULL
                        WHERE state = 'running' AND lease_until < ?1
                        RETURNING \(SQLiteRows.jobColumns)
                        """),
                arguments: [nowMillis, JobRescue.leaseRanOut]
            ).map(SQLiteRows.job)
            try db.cachedStatement(
                sql: "UPDATE jobs SET state = 'available' WHERE state IN ('scheduled', 'retryable') AND run_at <= ?"
            ).execute(arguments: [nowMillis])
            var jobs = try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        UPDATE jobs SET state = 'running', attempt = attempt + 1, attempted_at = ?, lease_until = ?,
                            leased_by = ?
                        WHERE id IN (SELECT id FROM jobs WHERE state = 'available' ORDER BY run_at, id LIMIT ?)
                        RETURNING \(SQLiteRows.jobColumns)
                        """),
                arguments: [nowMillis, leaseUntil, worker, limit]
            ).map(SQLiteRows.job)
            jobs.sort { ($0.runAt, $0.id) < ($1.runAt, $1.id) }
            let next = try Int64.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT MIN(run_at) FROM (
                            SELECT MIN(run_at) AS run_at FROM jobs WHERE state = 'available'
                            UNION ALL SELECT MIN(run_at) FROM jobs WHERE state = 'scheduled'
                            UNION ALL SELECT MIN(run_at) FROM jobs WHERE state = 'retryable')
                        """))
            return JobClaim(
                jobs: jobs, rescued: rescued.count, discarded: rescued.filter { $0.state == .discarded },
                nextRunAt: next.map(SQLiteRows.date))
        }
    }

    public func extendLeases(worker: String, until: Date) async throws {
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE jobs SET lease_until = ? WHERE state = 'running' AND leased_by = ?",
                arguments: [SQLiteRows.millis(until), worker])
        }
    }

    public func finishJobs(_ finishes: [JobFinish], at now: Date) async throws {
        let nowMillis = SQLiteRows.millis(now)
        try await pool.write { db in
            for finish in finishes {
                let lease: StatementArguments = [finish.lease.id.rawValue, finish.lease.attempt, finish.lease.worker]
                let fence = "WHERE id = ? AND attempt = ? AND leased_by = ? AND state = 'running'"
                switch finish.completion {
                case .completed:
                    try db.cachedStatement(
                        sql: """
                            UPDATE jobs SET state = 'completed', finalized_at = ?, lease_until = NULL, leased_by = NULL
                            \(fence)
                            """
                    ).execute(arguments: [nowMillis] + lease)
                case .failed(let error, let retryAt?):
                    try db.cachedStatement(
                        sql: """
                            UPDATE jobs SET state = 'retryable', run_at = ?, last_error = ?, lease_until = NULL,
                                leased_by = NULL
                            \(fence)
                            """
                    ).execute(arguments: [SQLiteRows.millis(retryAt), error] + lease)
                case .failed(let error, nil):
                    try db.cachedStatement(
                        sql: """
                            UPDATE jobs SET state = 'discarded', finalized_at = ?, last_error = ?, lease_until = NULL,
                                leased_by = NULL
                            \(fence)
                            """
                    ).execute(arguments: [nowMillis, error] + lease)
                case .snoozed(let until):
                    let untilMillis = SQLiteRows.millis(until)
                    try db.cachedStatement(
                        sql: """
                            UPDATE jobs SET state = CASE WHEN ? > ? THEN 'scheduled' ELSE 'available' END, run_at = ?,
                                attempt = attempt - 1, lease_until = NULL, leased_by = NULL
                            \(fence)
                            """
                    ).execute(arguments: [untilMillis, nowMillis, untilMillis] + lease)
                case .released:
                    try db.cachedStatement(
                        sql: """
                            UPDATE jobs SET state = 'available', attempt = attempt - 1, lease_until = NULL,
                                leased_by = NULL
                            \(fence)
                            """
                    ).execute(arguments: lease)
                }
            }
        }
    }

    public func job(_ id: JobID) async throws -> Job? {
        try await pool.read { db in
            try Self.fetchJob(db, id)
        }
    }

    public func jobs(matching filter: JobFilter, after: JobID?, limit: Int) async throws -> [Job] {
        try await pool.read { db in
            var conditions = ["id > ?"]
            var arguments: StatementArguments = [after?.rawValue ?? 0]
            if let state = filter.state {
                conditions.append("state = ?")
                _ = arguments.append(contentsOf: [state.rawValue])
            }
            if let kind = filter.kind {
                conditions.append("kind = ?")
                _ = arguments.append(contentsOf: [kind])
            }
            _ = arguments.append(contentsOf: [limit])
            return try Row.fetchAll(
                db,
                sql: """
                    SELECT \(SQLiteRows.jobColumns) FROM jobs
                    WHERE \(conditions.joined(separator: " AND ")) ORDER BY id LIMIT ?
                    """,
                arguments: arguments
            ).map(SQLiteRows.job)
        }
    }

    public func retryJob(_ id: JobID, at now: Date) async throws -> Job {
        try await pool.write { db in
            guard let job = try Self.fetchJob(db, id) else { throw JobError.jobNotFound }
            switch job.state {
            case .discarded, .retryable, .scheduled:
                try db.execute(
                    sql: """
                        UPDATE jobs SET state = 'available', run_at = ?, finalized_at = NULL,
                            max_attempts = MAX(max_attempts, attempt + 1)
                        WHERE id = ?
                        """,
                    arguments: [SQLiteRows.millis(now), id.rawValue])
                guard let retried = try Self.fetchJob(db, id) else { throw JobError.jobNotFound }
                return retried
            case .available, .running, .completed:
                throw JobError.notRetryable(current: job.state)
            }
        }
    }

    public func jobStatistics(at now: Date) async throws -> JobStatistics {
        let nowMillis = SQLiteRows.millis(now)
        return try await pool.read { db in
            var counts: [String: [Job.State: Int]] = [:]
            for row in try Row.fetchAll(db, sql: JobStatistics.countsSQL) {
                if let state = Job.State(rawValue: row["state"]) {
                    counts[row["kind"], default: [:]][state] = row["n"]
                }
            }
            let due = try Row.fetchOne(
                db,
                sql: """
                    SELECT COUNT(*) AS n, MIN(run_at) AS oldest FROM jobs
                    WHERE state = 'available' OR (state IN ('scheduled', 'retryable') AND run_at <= ?)
                    """,
                arguments: [nowMillis])
            return JobStatistics(
                counts: counts, due: due?["n"] ?? 0, oldestDueRunAt: (due?["oldest"] as Int64?).map(SQLiteRows.date))
        }
    }

    public func pruneJobs(completedBefore: Date, discardedBefore: Date) async throws -> Int {
        try await pool.write { db in
            try db.execute(
                sql: """
                    DELETE FROM jobs WHERE id IN (
                        SELECT id FROM jobs WHERE state = 'completed' AND run_at < ?1 AND finalized_at < ?1 LIMIT 10000)
                    """,
                arguments: [SQLiteRows.millis(completedBefore)])
            var deleted = db.changesCount
            try db.execute(
                sql: """
                    DELETE FROM jobs WHERE id IN (
                        SELECT id FROM jobs WHERE state = 'discarded' AND run_at < ?1 AND finalized_at < ?1 LIMIT 10000)
                    """,
                arguments: [SQLiteRows.millis(discardedBefore)])
            deleted += db.changesCount
            return deleted
        }
    }

    static func fetchJob(_ db: Database, _ id: JobID) throws -> Job? {
        try Row.fetchOne(db, sql: "SELECT \(SQLiteRows.jobColumns) FROM jobs WHERE id = ?", arguments: [id.rawValue])
            .map(SQLiteRows.job)
    }
}
