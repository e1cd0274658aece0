import CrestCore
import CrestStore
import Foundation
import Testing

/// The job diagram of `Job` tested arrow by arrow, on both stores: each test puts one job in the
/// arrow's start state, takes the arrow and checks the state, the attempt count and what else the
/// arrow promises. Refused arrows are tested too.
@Suite("Job state machine, arrow by arrow")
struct JobStateMachineTests {
    enum Arrow: String, CaseIterable, CustomTestStringConvertible {
        case scheduledToAvailable, availableToRunning, runningToCompleted, runningToRetryable, runningToDiscarded
        case retryableToAvailable, snoozedToScheduled, snoozedToAvailable, releasedToAvailable
        case leaseRanOutToRetryable, leaseRanOutOnLastAttemptToDiscarded
        case operatorRetriesDiscarded, operatorRetriesRetryable, operatorRetriesScheduled
        case operatorRetryRefused, staleLeaseChangesNothing

        var testDescription: String { rawValue }
    }

    @Test("each arrow", arguments: StoreKind.allCases, Arrow.allCases)
    func arrow(kind: StoreKind, arrow: Arrow) async throws {
        _ = try await kind.with { open in
            let store = try await open()
            try await Self.take(arrow, on: store)
        }
    }

    static func take(_ arrow: Arrow, on store: any Store) async throws {
        let t0 = millisecondNow()
        func at(_ seconds: TimeInterval) -> Date { t0.addingTimeInterval(seconds) }
        func enqueue(runAt: Date? = nil, maxAttempts: Int = 3) async throws -> JobID {
            try await store.enqueue(
                [NewJob(kind: "test.arrow", payload: "{}", runAt: runAt, maxAttempts: maxAttempts)], at: t0)[0].id
        }
        /// Claims (rescuing and making due jobs available on the way) as `worker` at `time`.
        func claim(_ worker: String = "w", at time: Date, limit: Int = 10, lease: Duration = .seconds(30)) async throws
            -> JobClaim
        {
            try await store.claimJobs(limit: limit, worker: worker, lease: lease, at: time)
        }
        func job(_ id: JobID) async throws -> Job { try #require(try await store.job(id)) }
        func running(maxAttempts: Int = 3) async throws -> Job {
            let id = try await enqueue(maxAttempts: maxAttempts)
            let claimed = try await claim(at: t0)
            return try #require(claimed.jobs.first { $0.id == id })
        }
        func finish(_ job: Job, _ completion: JobCompletion, worker: String = "w", at time: Date) async throws {
            try await store.finishJobs([JobFinish(lease: job.lease(worker: worker), completion: completion)], at: time)
        }

        switch arrow {
        case .scheduledToAvailable:
            // The embedded store marks a due job `available`; PostgreSQL leaves it `scheduled` and
            // claims it from its run-at on (the `jobs_waiting` index serves both). Either way: not
            // claimable before its run-at, claimable from it.
            let id = try await enqueue(runAt: at(60))
            #expect(try await job(id).state == .scheduled)
            #expect(try await claim(at: at(59)).jobs.isEmpty, "not before its run-at")
            #expect(try await job(id).state == .scheduled)
            _ = try await claim(at: at(60), limit: 0)
            #expect([.scheduled, .available].contains(try await job(id).state))
            #expect(try await claim(at: at(60)).jobs.map(\.id) == [id])

        case .availableToRunning:
            let id = try await enqueue()
            #expect(try await job(id).state == .available)
            let claimed = try await claim(at: t0)
            #expect(claimed.jobs.map(\.id) == [id])
            let now = try await job(id)
            #expect(now.state == .running && now.attempt == 1 && now.leaseUntil == at(30))
            #expect(try await claim("other", at: t0).jobs.isEmpty, "claimed once")

        case .runningToCompleted:
            let running = try await running()
            try await finish(running, .completed, at: at(1))
            let done = try await job(running.id)
            #expect(done.state == .completed && done.finalizedAt == at(1) && done.leaseUntil == nil)

        case .runningToRetryable:
            let running = try await running()
            try await finish(running, .failed(error: "boom", retryAt: at(10)), at: at(1))
            let failed = try await job(running.id)
            #expect(failed.state == .retryable && failed.runAt == at(10) && failed.lastError == "boom" && failed.attempt == 1)

        case .runningToDiscarded:
            let running = try await running(maxAttempts: 1)
            try await finish(running, .failed(error: "fatal", retryAt: nil), at: at(1))
            let discarded = try await job(running.id)
            #expect(discarded.state == .discarded && discarded.lastError == "fatal" && discarded.finalizedAt == at(1))

        case .retryableToAvailable:
            let running = try await running()
            try await finish(running, .failed(error: "boom", retryAt: at(10)), at: at(1))
            #expect(try await claim(at: at(9)).jobs.isEmpty, "not before its backoff")
            #expect(try await job(running.id).state == .retryable)
            let again = try await claim(at: at(10))
            #expect(again.jobs.map(\.id) == [running.id] && again.jobs[0].attempt == 2)

        case .snoozedToScheduled:
            let running = try await running()
            try await finish(running, .snoozed(until: at(60)), at: at(1))
            let snoozed = try await job(running.id)
            #expect(snoozed.state == .scheduled && snoozed.runAt == at(60) && snoozed.attempt == 0, "its attempt given back")

        case .snoozedToAvailable:
            let running = try await running()
            try await finish(running, .snoozed(until: at(1)), at: at(1))
            let snoozed = try await job(running.id)
            #expect(snoozed.state == .available && snoozed.attempt == 0)

        case .releasedToAvailable:
            let running = try await running()
            try await finish(running, .released, at: at(1))
            let released = try await job(running.id)
            #expect(released.state == .available && released.attempt == 0 && released.leaseUntil == nil)

        case .leaseRanOutToRetryable:
            let running = try await running()
            #expect(try await claim("other", at: at(29), limit: 0).rescued == 0, "the lease still holds")
            let rescue = try await claim("other", at: at(31), limit: 0)
            #expect(rescue.rescued == 1 && rescue.discarded.isEmpty)
            let rescued = try await job(running.id)
            #expect([.retryable, .available].contains(rescued.state) && rescued.attempt == 1 && rescued.leaseUntil == nil)
            #expect(rescued.lastError?.contains("lease ran out") == true)

        case .leaseRanOutOnLastAttemptToDiscarded:
            let running = try await running(maxAttempts: 1)
            let rescue = try await claim("other", at: at(31), limit: 0)
            #expect(rescue.discarded.map(\.id) == [running.id], "handed over for its kind's discard hook")
            #expect(try await job(running.id).state == .discarded)

        case .operatorRetriesDiscarded:
            let running = try await running(maxAttempts: 1)
            try await finish(running, .failed(error: "fatal", retryAt: nil), at: at(1))
            let retried = try await store.retryJob(running.id, at: at(2))
            #expect(retried.state == .available && retried.maxAttempts == 2 && retried.runAt == at(2), "one more attempt")
            #expect(try await claim(at: at(2)).jobs.map(\.id) == [running.id])

        case .operatorRetriesRetryable:
            let running = try await running()
            try await finish(running, .failed(error: "boom", retryAt: at(600)), at: at(1))
            let retried = try await store.retryJob(running.id, at: at(2))
            #expect(retried.state == .available && retried.runAt == at(2) && retried.maxAttempts == 3, "runs now")

        case .operatorRetriesScheduled:
            let id = try await enqueue(runAt: at(600))
            let retried = try await store.retryJob(id, at: at(2))
            #expect(retried.state == .available && retried.runAt == at(2))

        case .operatorRetryRefused:
            let running = try await running()
            await #expect(throws: JobError.notRetryable(current: .running)) { try await store.retryJob(running.id, at: at(1)) }
            try await finish(running, .completed, at: at(1))
            await #expect(throws: JobError.notRetryable(current: .completed)) {
                try await store.retryJob(running.id, at: at(2))
            }
            let available = try await enqueue()
            await #expect(throws: JobError.notRetryable(current: .available)) { try await store.retryJob(available, at: at(2)) }
            await #expect(throws: JobError.jobNotFound) { try await store.retryJob(JobID(999_999), at: at(2)) }

        case .staleLeaseChangesNothing:
            let running = try await running()
            try await finish(running, .completed, worker: "someone else", at: at(1))
            #expect(try await job(running.id).state == .running, "not its lease")
            // Rescued and claimed again: the first worker's late report changes nothing either.
            let again = try await claim("second", at: at(31))
            #expect(again.jobs.map(\.id) == [running.id])
            try await finish(running, .completed, at: at(32))
            let now = try await job(running.id)
            #expect(now.state == .running && now.attempt == 2)
        }
    }
}
