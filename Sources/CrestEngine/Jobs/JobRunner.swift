import CrestConcurrency
import CrestCore
import CrestStore
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Tracing

/// Runs durable jobs from the store with a fixed number of workers, as a `Service`.
///
/// One loop claims as many jobs as there are free workers (each claim also rescues jobs whose
/// lease ran out and makes due ones available), runs each in its own task, and sleeps until the
/// next job is due, a worker frees up, `notify(runAt:)` is called, or the poll interval passed.
/// While jobs run, their leases are extended every third of a lease. Outcomes are written in
/// batches (one transaction for all that finished meanwhile). Failed attempts are retried after
/// an exponential backoff with jitter; the last failure discards the job with its error.
///
/// On graceful shutdown it stops claiming, lets running jobs finish for `shutdownGrace`, cancels
/// and puts back (without using an attempt) those still running, writes every outcome, and returns.
///
/// ```swift
/// let runner = JobRunner(store: store, handlers: ["email.send": SendEmail()], logger: logger)
/// let group = ServiceGroup(services: [runner], logger: logger)
/// ```
package final class JobRunner: Service, Sendable {
    /// Identifies this runner's claims in the store.
    package let worker: String
    private let store: any JobQueue
    private let handlers: [String: any JobHandler]
    private let configuration: JobRunnerConfiguration
    private let logger: Logger
    private let clock: any CrestClock
    private let metrics = JobMetrics()
    /// What the runner did, counted, so that tests wait for an event instead of for time.
    package let signals = JobRunnerSignals()
    private let finisher: GroupCommitter<JobFinish, Void>

    private struct State {
        var running = 0
        /// No more claims.
        var stopping = false
        /// Jobs done and outcomes written: the lease and maintenance loops end too.
        var finished = false
        /// When the claim loop means to look again, if it is asleep.
        var wakeAt: Date?
    }

    private let state = Mutex(State())
    private let claimWake = WakeSignal()
    private let leaseWake = WakeSignal()
    private let maintenanceWake = WakeSignal()

    package init(
        store: any JobQueue, handlers: [String: any JobHandler], configuration: JobRunnerConfiguration = .init(),
        logger: Logger, clock: any CrestClock = SystemClock()
    ) {
        self.store = store
        self.handlers = handlers
        self.configuration = configuration
        self.logger = logger
        self.clock = clock
        let host = ProcessInfo.processInfo.hostName
        self.worker = "\(host)/\(ProcessInfo.processInfo.processIdentifier)/\(UUID().uuidString.prefix(8).lowercased())"
        self.finisher = GroupCommitter(window: .zero, maxBatchSize: 1024, logger: logger) { finishes in
            try await store.finishJobs(finishes, at: clock.now())
            return Array(repeating: (), count: finishes.count)
        }
    }

    /// Jobs running now.
    package var runningCount: Int { state.withLock { $0.running } }

    /// Tells the runner that a job was enqueued to run at `runAt`, so that it does not sleep past it
    /// (by more than the configured gathering).
    package func notify(runAt: Date) {
        let wake = state.withLock { state in
            guard let wakeAt = state.wakeAt else { return false }
            return runAt.addingTimeInterval(configuration.gather.seconds) < wakeAt
        }
        if wake { claimWake.signal() }
    }

    package func run() async throws {
        await withGracefulShutdownHandler {
            // Fixed before anything is claimed: the lease loop's first wake is due a third of a lease
            // after this, so no job waits longer for its first extension — however late the loop's
            // task first runs on a busy machine.
            let leasesFrom = clock.now()
            await withTaskGroup(of: Void.self) { loops in
                loops.addTask { await self.finisher.drain() }
                loops.addTask { await self.keepLeases(from: leasesFrom) }
                loops.addTask { await self.maintain() }
                await self.runJobs()
                self.finisher.stopAccepting()
                self.state.withLock { $0.finished = true }
                self.leaseWake.signal()
                self.maintenanceWake.signal()
                await loops.waitForAll()
            }
        } onGracefulShutdown: {
            self.state.withLock { $0.stopping = true }
            self.claimWake.signal()
        }
        logger.debug("job runner stopped", metadata: ["worker": "\(worker)"])
    }

    private var isStopping: Bool { state.withLock { $0.stopping } || Task.isCancelled }

    private var isFinished: Bool { state.withLock { $0.finished } || Task.isCancelled }

    // MARK: Claiming and running

    private func runJobs() async {
        await withDiscardingTaskGroup { jobs in
            var failures = 0
            // Claims are transactions: wait for a quarter of the workers to be free rather than
            // claiming one job each time one finishes.
            let claimAtLeast = max(1, configuration.workers / 4)
            while !isStopping {
                let running = runningCount
                let free = configuration.workers - running
                if free < claimAtLeast, running > 0 {
                    await claimWake.wait(for: configuration.pollInterval, on: clock)
                    continue
                }
                let claim: JobClaim
                do {
                    claim = try await store.claimJobs(
                        limit: free, worker: worker, lease: configuration.lease, at: clock.now())
                    failures = 0
                } catch {
                    failures += 1
                    metrics.countClaimFailure()
                    logger.error("claiming jobs failed", metadata: ["error": "\(error)", "failures": "\(failures)"])
                    await claimWake.wait(for: configuration.backoff.delay(afterAttempt: failures), on: clock)
                    continue
                }
                if claim.rescued > 0 {
                    metrics.countRescued(claim.rescued)
                    logger.warning("rescued jobs whose lease ran out", metadata: ["count": "\(claim.rescued)"])
                }
                for job in claim.discarded {
                    jobs.addTask { await self.givenUp(job) }
                }
                let workers = configuration.workers
                signals.claimed(claim.jobs.count)
                state.withLock { state in
                    state.running += claim.jobs.count
                    // The store hands out at most `free` jobs: never more running than workers.
                    precondition(state.running <= workers, "\(state.running) jobs running, \(workers) workers")
                }
                for job in claim.jobs {
                    jobs.addTask {
                        await self.execute(job)
                        self.state.withLock { state in
                            state.running -= 1
                            precondition(state.running >= 0, "a job finished twice")
                        }
                        self.claimWake.signal()
                    }
                }
                if claim.jobs.count < free {
                    // The queue has nothing more due: sleep until the next job is.
                    let now = clock.now()
                    var wait = configuration.pollInterval
                    if let next = claim.nextRunAt {
                        let untilNext = Duration.milliseconds(Int64(max(0, next.timeIntervalSince(now)) * 1000) + 1)
                        wait = min(wait, untilNext + configuration.gather)
                    }
                    let wakeAt = now.addingTimeInterval(wait.seconds)
                    state.withLock { $0.wakeAt = wakeAt }
                    signals.sleepsIdle()
                    await claimWake.wait(until: wakeAt, on: clock)
                    state.withLock { $0.wakeAt = nil }
                    if configuration.gather > .zero, clock.now() < wakeAt, !isStopping {
                        // Woken early by a job enqueued to run now: let the ones enqueued right after
                        // it come, and claim them together. Not cut short by workers that free up
                        // (that would undo it under load); a shutdown waits for it.
                        try? await clock.sleep(for: configuration.gather)
                    }
                }
            }
            // Shutting down: give running jobs their grace, then cancel them (they are put back).
            let deadline = ContinuousClock.now + configuration.shutdownGrace
            while runningCount > 0, ContinuousClock.now < deadline, !Task.isCancelled {
                // The grace is for real work to finish: real time, whatever the injected clock does.
                await claimWake.wait(for: min(.milliseconds(50), deadline - ContinuousClock.now), on: SystemClock())
            }
            if runningCount > 0 {
                logger.warning("cancelling jobs still running at shutdown", metadata: ["count": "\(runningCount)"])
                jobs.cancelAll()
            }
        }
    }

    /// Runs `job` and records its outcome, all in one `job.run` span — in the trace of the work that
    /// enqueued it, if that was traced: a failure is the span's error, and the log line that tells
    /// of it carries the span's trace id.
    private func execute(_ job: Job) async {
        let context = job.traceParent.map(TraceParent.context) ?? ServiceContext.current ?? .topLevel
        await withSpan("job.run", context: context, ofKind: .consumer) { span in
            if span.isRecording {
                span.attributes["crest.job.kind"] = job.kind
                span.attributes["crest.job.id"] = Int(job.id.rawValue)
                span.attributes["crest.job.attempt"] = job.attempt
            }
            await execute(job, in: span)
        }
    }

    private func execute(_ job: Job, in span: any Span) async {
        let started = ContinuousClock.now
        let completion: JobCompletion
        let outcome: String
        do {
            guard let handler = handlers[job.kind] else {
                throw UnknownJobKindError(kind: job.kind)
            }
            let result = try await Self.run(handler, job)
            switch result {
            case .completed:
                (completion, outcome) = (.completed, "completed")
            case .snooze(let delay):
                (completion, outcome) = (.snoozed(until: clock.now().addingTimeInterval(delay.seconds)), "snoozed")
            }
        } catch is CancellationError where isStopping {
            (completion, outcome) = (.released, "released")
        } catch let error as JobDiscardError {
            (completion, outcome) = (.failed(error: error.description, retryAt: nil), "discarded")
        } catch {
            let message = String(describing: error)
            if job.attempt >= job.maxAttempts {
                (completion, outcome) = (.failed(error: message, retryAt: nil), "discarded")
            } else {
                let backoff = handlers[job.kind]?.backoff ?? configuration.backoff
                let retryAt = clock.now().addingTimeInterval(backoff.delay(afterAttempt: job.attempt).seconds)
                (completion, outcome) = (.failed(error: message, retryAt: retryAt), "failed")
            }
        }
        metrics.countAttempt(kind: job.kind, outcome: outcome, duration: ContinuousClock.now - started)
        if span.isRecording { span.attributes["crest.job.outcome"] = outcome }
        if case .failed(let error, let retryAt) = completion {
            span.setStatus(SpanStatus(code: .error, message: error))
            logger.log(
                level: retryAt == nil ? .error : .warning, "job failed",
                metadata: [
                    "job": "\(job.id)", "kind": "\(job.kind)", "attempt": "\(job.attempt)/\(job.maxAttempts)",
                    "error": "\(error)", "next": "\(retryAt.map { "\($0)" } ?? "discarded")",
                ])
        }
        guard await record(JobFinish(lease: job.lease(worker: worker), completion: completion)) else { return }
        if case .failed(let error, nil) = completion, let handler = handlers[job.kind] {
            await handler.discarded(job, error: error)
        }
    }

    /// A job whose lease ran out on its last attempt, discarded by a claim: its kind's
    /// `discarded` hook runs as it would after a last attempt that failed.
    private func givenUp(_ job: Job) async {
        let error = job.lastError ?? "the lease ran out on the last attempt"
        metrics.countOutcome(kind: job.kind, outcome: "discarded")
        logger.error(
            "job failed",
            metadata: [
                "job": "\(job.id)", "kind": "\(job.kind)", "attempt": "\(job.attempt)/\(job.maxAttempts)",
                "error": "\(error)", "next": "discarded",
            ])
        await handlers[job.kind]?.discarded(job, error: error)
    }

    /// Writes a run's outcome, retrying a few times. When it cannot be written, the job stays
    /// running until its lease runs out and then runs again — at least once, never lost.
    private func record(_ finish: JobFinish) async -> Bool {
        for attempt in 1...3 {
            do {
                try await finisher.submit(finish)
                signals.recordedOutcome()
                return true
            } catch is GroupCommitter<JobFinish, Void>.ShutdownError {
                break
            } catch {
                logger.warning(
                    "recording a job outcome failed", metadata: ["job": "\(finish.lease.id)", "error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(100 * attempt))
            }
        }
        logger.error(
            "job outcome not recorded; the job runs again after its lease", metadata: ["job": "\(finish.lease.id)"])
        return false
    }

    /// Runs the handler, cancelling it after its timeout.
    private static func run(_ handler: any JobHandler, _ job: Job) async throws -> JobResult {
        try await withThrowingTaskGroup(of: JobResult?.self) { group in
            group.addTask { try await handler.run(job) }
            group.addTask {
                await SharedDeadlines.shared.wait(until: .now + handler.timeout)
                try Task.checkCancellation()
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let result = first else {
                throw JobTimeoutError(timeout: handler.timeout)
            }
            return result
        }
    }

    // MARK: Leases and maintenance

    /// Every third of a lease from `start`, the leases of the jobs running here are extended to a
    /// whole lease from now. The next wake is fixed when the loop wakes, before the store is
    /// written, so time that passes during the write (or a test's move of the clock) shortens the
    /// next wait.
    private func keepLeases(from start: Date) async {
        let interval = (configuration.lease / 3).seconds
        var next = start.addingTimeInterval(interval)
        while !isFinished {
            await leaseWake.wait(until: next, on: clock)
            let now = clock.now()
            next = now.addingTimeInterval(interval)
            guard !isFinished, runningCount > 0 else { continue }
            do {
                try await store.extendLeases(worker: worker, until: now.addingTimeInterval(configuration.lease.seconds))
                signals.extendedLeases()
            } catch {
                logger.error("extending job leases failed", metadata: ["error": "\(error)"])
            }
        }
    }

    private func maintain() async {
        var lastPrune = ContinuousClock.now - .seconds(3600)
        while !isStopping {
            let now = clock.now()
            do {
                metrics.publish(try await store.jobStatistics(at: now), at: now)
                if ContinuousClock.now - lastPrune >= .seconds(60) {
                    lastPrune = ContinuousClock.now
                    let pruned = try await store.pruneJobs(
                        completedBefore: now.addingTimeInterval(-configuration.completedRetention.seconds),
                        discardedBefore: now.addingTimeInterval(-configuration.discardedRetention.seconds))
                    if pruned > 0 { logger.info("pruned old jobs", metadata: ["count": "\(pruned)"]) }
                }
            } catch {
                logger.warning("job queue maintenance failed", metadata: ["error": "\(error)"])
            }
            await maintenanceWake.wait(for: configuration.statisticsInterval, on: clock)
        }
    }
}

/// A job of a kind this runner has no handler for.
struct UnknownJobKindError: Error, CustomStringConvertible {
    var kind: String
    var description: String { "no handler for job kind \(kind)" }
}

/// A run that took longer than its handler's timeout.
struct JobTimeoutError: Error, CustomStringConvertible {
    var timeout: Duration
    var description: String { "the run took longer than \(timeout) and was cancelled" }
}
