import CrestCore
import Foundation
import Logging
import PostgresNIO

/// Job rows: inserting (honouring unique keys) from any transaction that needs a job.
enum PostgresJobs {

    @discardableResult
    static func insert(_ job: NewJob, at now: Date, on connection: PostgresConnection, logger: Logger) async throws
        -> EnqueuedJob
    {
        let runAt = max(job.runAt ?? now, now)
        let state: Job.State = runAt > now ? .scheduled : .available
        let inserted = try await connection.query(
            """
            INSERT INTO jobs (kind, payload, state, max_attempts, run_at, unique_key, created_at, trace_parent)
            VALUES (\(job.kind), \(job.payload), \(state.rawValue), \(job.maxAttempts),
                \(PostgresRows.millis(job.runAt ?? now)), \(job.uniqueKey), \(PostgresRows.millis(now)), \(job.traceParent))
            ON CONFLICT DO NOTHING RETURNING id
            """, logger: logger
        ).values(Int64.self).first
        if let inserted {
            try await PostgresNotices.jobsDue(at: runAt, on: connection, logger: logger)
            return EnqueuedJob(id: JobID(inserted), duplicate: false)
        }
        guard
            let key = job.uniqueKey,
            let existing = try await connection.query(
                "SELECT id FROM jobs WHERE unique_key = \(key) AND state IN \(unescaped: StoreRules.liveJobStatesSQL)", logger: logger
            ).values(Int64.self).first
        else { throw CorruptRowError(column: "jobs.unique_key") }
        return EnqueuedJob(id: JobID(existing), duplicate: true)
    }
}
