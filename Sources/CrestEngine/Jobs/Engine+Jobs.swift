import CrestCore
import CrestStore
import Foundation

extension Engine {
    /// A job, for operators.
    package func job(_ id: JobID) async throws -> Job {
        guard let job = try await withStore("read job", { try await store.job(id) }) else { throw JobError.jobNotFound }
        return job
    }

    /// Jobs for operators, in id order after `after`.
    package func jobs(matching filter: JobFilter, after: JobID?, limit: Int) async throws -> [Job] {
        try await withStore("list jobs") { try await store.jobs(matching: filter, after: after, limit: limit) }
    }

    /// Runs a discarded (or waiting) job again now; a discarded job gets one more attempt.
    package func retryJob(_ id: JobID) async throws -> Job {
        let now = clock()
        let job = try await withStore("retry job") { try await store.retryJob(id, at: now) }
        jobs.notify(runAt: now)
        return job
    }
}
