import CrestCore
import Foundation
import GRDB

/// Job rows: inserting (honouring unique keys) from any transaction that needs a job.
enum SQLiteJobs {
    /// A job with work ahead, said as the unique keys' partial index says it (a query must say it
    /// so to use that index): not in a final state. Two constants are compared one by one; a
    /// longer `IN` list would cost a temporary B-tree each time the statement runs.
    static let liveSQL =
        "state NOT IN (" + Job.State.allCases.filter { !$0.isLive }.map { "'\($0.rawValue)'" }.joined(separator: ", ") + ")"

    static let insertSQL = """
        INSERT INTO jobs (kind, payload, state, max_attempts, run_at, unique_key, created_at, trace_parent)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT DO NOTHING
        """

    @discardableResult
    static func insert(_ db: Database, _ job: NewJob, at now: Date) throws -> EnqueuedJob {
        let runAt = max(job.runAt ?? now, now)
        let state: Job.State = runAt > now ? .scheduled : .available
        try DirectStatement(db, sql: insertSQL).execute(
            job.kind, job.payload, state.rawValue, job.maxAttempts, SQLiteRows.millis(job.runAt ?? now), job.uniqueKey,
            SQLiteRows.millis(now), job.traceParent)
        if db.changesCount == 1 { return EnqueuedJob(id: JobID(db.lastInsertedRowID), duplicate: false) }
        guard
            let key = job.uniqueKey,
            let existing = try Int64.fetchOne(
                db, sql: "SELECT id FROM jobs WHERE unique_key = ? AND \(liveSQL)", arguments: [key])
        else { throw CorruptRowError(column: "jobs.unique_key") }
        return EnqueuedJob(id: JobID(existing), duplicate: true)
    }
}
