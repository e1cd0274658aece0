import CrestCore
import Foundation

/// What a handler asks of the runner after a successful run.
package enum JobResult: Sendable, Hashable {
    case completed
    /// Run again after this long, without using up an attempt (e.g. "not yet").
    case snooze(Duration)
}

/// Thrown by a handler that knows retrying cannot help: the job is discarded at once with this error.
package struct JobDiscardError: Error, CustomStringConvertible {
    package var description: String

    package init(_ description: String) { self.description = description }
}

/// The code that runs one kind of job.
///
/// The runner may run a job more than once (a worker that dies after the effect but before
/// reporting it), so a handler must be idempotent: its effect, checked against the store, happens
/// once however often it runs. A thrown error fails the attempt; the job runs again after a
/// backoff until its last attempt, then it is discarded and `discarded(_:error:)` is called.
package protocol JobHandler: Sendable {
    func run(_ job: Job) async throws -> JobResult

    /// Longest a run may take; after it the run is cancelled and counts as a failed attempt.
    var timeout: Duration { get }

    /// The backoff between this kind's attempts; `nil` uses the runner's.
    var backoff: Backoff? { get }

    /// Called once, after the job failed its last attempt and was discarded.
    func discarded(_ job: Job, error: String) async
}

extension JobHandler {
    package var timeout: Duration { .seconds(60) }

    package var backoff: Backoff? { nil }

    package func discarded(_ job: Job, error: String) async {}
}

/// A handler made of closures.
///
/// ```swift
/// let handler = JobHandlerFunction { job in
///     try await deliver(job.payload)
///     return .completed
/// }
/// ```
package struct JobHandlerFunction: JobHandler {
    package let timeout: Duration
    package let backoff: Backoff?
    private let body: @Sendable (Job) async throws -> JobResult
    private let onDiscard: @Sendable (Job, String) async -> Void

    package init(
        timeout: Duration = .seconds(60), backoff: Backoff? = nil,
        onDiscard: @escaping @Sendable (Job, String) async -> Void = { _, _ in },
        _ body: @escaping @Sendable (Job) async throws -> JobResult
    ) {
        self.timeout = timeout
        self.backoff = backoff
        self.body = body
        self.onDiscard = onDiscard
    }

    package func run(_ job: Job) async throws -> JobResult { try await body(job) }

    package func discarded(_ job: Job, error: String) async { await onDiscard(job, error) }
}

/// A runner's handlers, registered by typed kind: each body gets its job's parameters decoded
/// (a payload that does not decode discards the job with the reason — retrying cannot help).
///
/// ```swift
/// var handlers = JobHandlers()
/// handlers.register(OrderJobs.expire, timeout: .seconds(30)) { job, order in try await expire(order.orderId) }
/// let runner = JobRunner(store: store, handlers: handlers.byKind, logger: logger)
/// ```
package struct JobHandlers: Sendable {
    /// What `JobRunner` takes: the handler of each kind's name.
    package private(set) var byKind: [String: any JobHandler] = [:]

    package init() {}

    /// Registers the handler of `kind`; `onDiscard` gets the parameters too when they decode.
    package mutating func register<Parameters>(
        _ kind: JobKind<Parameters>, timeout: Duration = .seconds(60), backoff: Backoff? = nil,
        onDiscard: @escaping @Sendable (Job, Parameters?, String) async -> Void = { _, _, _ in },
        _ body: @escaping @Sendable (Job, Parameters) async throws -> JobResult
    ) {
        precondition(byKind[kind.name] == nil, "two handlers for \(kind.name)")
        byKind[kind.name] = JobHandlerFunction(
            timeout: timeout, backoff: backoff,
            onDiscard: { job, error in await onDiscard(job, try? kind.parameters(of: job), error) }
        ) { job in
            let parameters: Parameters
            do {
                parameters = try kind.parameters(of: job)
            } catch {
                throw JobDiscardError("\(error)")
            }
            return try await body(job, parameters)
        }
    }
}
