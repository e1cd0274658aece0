import Foundation

/// A job's id: a positive integer the store assigns in enqueue order.
public struct JobID: Hashable, Sendable, Comparable, Codable, CustomStringConvertible {
    public let rawValue: Int64

    public init(_ rawValue: Int64) { self.rawValue = rawValue }

    /// Parses a decimal id; `nil` for anything else.
    public init?(_ string: String) {
        guard let value = Int64(string), value > 0 else { return nil }
        rawValue = value
    }

    public var description: String { String(rawValue) }

    public static func < (lhs: JobID, rhs: JobID) -> Bool { lhs.rawValue < rhs.rawValue }

    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(Int64.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// A unit of durable, asynchronous work: expiring an order, confirming a payment, delivering a webhook.
///
/// Every arrow, each one tested on both stores (`Tests/CrestStoreTests/JobStateMachineTests.swift`):
///
/// ```
///              ┌──────────── snoozed, due later (attempt given back) ───────────────┐
///              ▼                                                                     │
/// scheduled ──run-at reached──▶ available ──claimed──▶ running ──succeeded──▶ completed
///     │                          ▲  ▲  ▲               │  │  │
///     │                          │  │  └── snoozed now, or released at shutdown ┘  │  │
///     │                          │  └──── retryable ◀── failed, attempts left ────┘  │
///     │                          │          │  (also: its lease ran out, worker died)  │
///     │                          │          │                                           │
///     └── operator retry ────────┤◀─────────┘ run-at reached, or operator retry         │
///                                │                                                      │
///                                └──── operator retry (one more attempt) ◀── discarded ◀┘
///                                                        failed on its last attempt, or its
///                                                        lease ran out on its last attempt
/// ```
/// "run-at reached → available" is where the embedded store marks a due job; PostgreSQL leaves it
/// `scheduled` or `retryable` and claims it straight from there once its run-at passed.
public struct Job: Sendable, Hashable {
    public enum State: String, Sendable, Hashable, Codable, CaseIterable {
        /// Waits for its run-at.
        case scheduled
        /// Ready to be claimed by a worker.
        case available
        /// Claimed by a worker, whose lease ends at `leaseUntil`.
        case running
        /// Failed, will run again at its run-at.
        case retryable
        case completed
        /// Failed on its last attempt; kept with its error for operators.
        case discarded

        /// A live job still has work ahead; a unique key admits one live job at a time.
        public var isLive: Bool { self != .completed && self != .discarded }
    }

    public var id: JobID
    public var kind: String
    /// JSON, as the job's handler wrote it.
    public var payload: String
    public var state: State
    /// How many times a worker claimed it (a snooze gives its attempt back).
    public var attempt: Int
    public var maxAttempts: Int
    public var runAt: Date
    public var leaseUntil: Date?
    public var lastError: String?
    public var uniqueKey: String?
    public var createdAt: Date
    public var attemptedAt: Date?
    public var finalizedAt: Date?
    /// The W3C `traceparent` of the work that enqueued it, if that was traced: its runs continue
    /// that trace.
    public var traceParent: String?

    public init(
        id: JobID, kind: String, payload: String, state: State, attempt: Int, maxAttempts: Int, runAt: Date,
        leaseUntil: Date? = nil, lastError: String? = nil, uniqueKey: String? = nil, createdAt: Date,
        attemptedAt: Date? = nil, finalizedAt: Date? = nil, traceParent: String? = nil
    ) {
        self.id = id
        self.kind = kind
        self.payload = payload
        self.state = state
        self.attempt = attempt
        self.maxAttempts = maxAttempts
        self.runAt = runAt
        self.leaseUntil = leaseUntil
        self.lastError = lastError
        self.uniqueKey = uniqueKey
        self.createdAt = createdAt
        self.attemptedAt = attemptedAt
        self.finalizedAt = finalizedAt
        self.traceParent = traceParent
    }

    /// The lease of this claim: a finish or lease extension only applies while the job still
    /// carries it, so a worker whose lease ran out cannot overwrite the run that rescued it.
    public func lease(worker: String) -> JobLease { JobLease(id: id, attempt: attempt, worker: worker) }
}

/// A job to enqueue.
public struct NewJob: Sendable, Hashable {
    public static let defaultMaxAttempts = 25

    public var kind: String
    public var payload: String
    /// `nil` runs it as soon as a worker is free.
    public var runAt: Date?
    public var maxAttempts: Int
    /// While a live job has this key, enqueueing another with it does nothing.
    public var uniqueKey: String?
    /// The W3C `traceparent` of the work that enqueues it (see ``Job/traceParent``).
    public var traceParent: String?

    public init(
        kind: String, payload: String, runAt: Date? = nil, maxAttempts: Int = defaultMaxAttempts,
        uniqueKey: String? = nil, traceParent: String? = nil
    ) {
        precondition(maxAttempts >= 1, "a job needs at least one attempt")
        self.kind = kind
        self.payload = payload
        self.runAt = runAt
        self.maxAttempts = maxAttempts
        self.uniqueKey = uniqueKey
        self.traceParent = traceParent
    }
}

/// Which claim of which job, held by which worker.
public struct JobLease: Sendable, Hashable {
    public var id: JobID
    public var attempt: Int
    public var worker: String

    public init(id: JobID, attempt: Int, worker: String) {
        self.id = id
        self.attempt = attempt
        self.worker = worker
    }
}

/// How a claimed job ended this time.
public enum JobCompletion: Sendable, Hashable {
    case completed
    /// Failed: runs again at `retryAt`, or is discarded when `retryAt` is `nil`.
    case failed(error: String, retryAt: Date?)
    /// Runs again at `until` without using up an attempt.
    case snoozed(until: Date)
    /// Put back unfinished (the worker is shutting down), without using up an attempt.
    case released
}

/// The end of one claim, as a worker reports it to the store.
public struct JobFinish: Sendable, Hashable {
    public var lease: JobLease
    public var completion: JobCompletion

    public init(lease: JobLease, completion: JobCompletion) {
        self.lease = lease
        self.completion = completion
    }
}

/// Why an operator request about a job was refused.
public enum JobError: Error, Sendable, Hashable {
    case jobNotFound
    /// Only discarded, retryable and scheduled jobs can be retried now.
    case notRetryable(current: Job.State)
}
