import Foundation

/// The parameters a kind of job carries, stored as the job's JSON payload.
///
/// `payload` defaults to `JSONEncoder`'s output; a type enqueued on the hot path (one or two jobs
/// per reserved order) writes it by hand, and a test reads it back with `JSONDecoder`.
public protocol JobParameters: Codable, Sendable, Hashable {
    var payload: String { get }
}

extension JobParameters {
    public var payload: String {
        // Encoding ids, strings and integers cannot fail; a type that could is not job parameters.
        guard let data = try? JSONEncoder().encode(self) else { preconditionFailure("\(Self.self) does not encode") }
        return String(decoding: data, as: UTF8.self)
    }
}

/// A kind of job and the type of its parameters, declared together (as swift-jobs' `JobName`):
/// a job is enqueued and read back with the same type, and no handler parses JSON by hand.
///
/// ```swift
/// static let expire = JobKind<OrderJob>("order.expire", maxAttempts: 25)
/// let job = expire.job(OrderJob(orderId: id), runAt: order.expiresAt)    // a NewJob to enqueue
/// let order = try expire.parameters(of: claimed).orderId                  // in its handler
/// ```
public struct JobKind<Parameters: JobParameters>: Sendable, Hashable, CustomStringConvertible {
    /// The kind as stored in `jobs.kind` and shown to operators.
    public let name: String
    public let maxAttempts: Int

    public init(_ name: String, maxAttempts: Int = NewJob.defaultMaxAttempts) {
        precondition(!name.isEmpty && maxAttempts >= 1, "a job kind needs a name and at least one attempt")
        self.name = name
        self.maxAttempts = maxAttempts
    }

    public var description: String { name }

    /// A job of this kind to enqueue.
    public func job(
        _ parameters: Parameters, runAt: Date? = nil, uniqueKey: String? = nil, traceParent: String? = nil
    ) -> NewJob {
        NewJob(
            kind: name, payload: parameters.payload, runAt: runAt, maxAttempts: maxAttempts, uniqueKey: uniqueKey,
            traceParent: traceParent)
    }

    /// The parameters of `job`, which must be of this kind.
    public func parameters(of job: Job) throws(JobPayloadError) -> Parameters {
        guard job.kind == name else { throw JobPayloadError(kind: name, payload: job.payload, reason: "the job is a \(job.kind)") }
        do {
            return try JSONDecoder().decode(Parameters.self, from: Data(job.payload.utf8))
        } catch {
            throw JobPayloadError(kind: name, payload: job.payload, reason: "\(error)")
        }
    }
}

/// A job's payload is not the parameters of its kind: retrying cannot help.
public struct JobPayloadError: Error, Sendable, Hashable, CustomStringConvertible {
    public var kind: String
    public var payload: String
    public var reason: String

    public var description: String { "the payload \(payload) is not a \(kind) job's: \(reason)" }
}

/// The parameters of every job about one order: `{"orderId": "…"}`.
public struct OrderJob: JobParameters {
    public var orderId: OrderID

    public init(orderId: OrderID) { self.orderId = orderId }

    /// Written by hand: ids are hex and dashes, and this runs for every reserved order.
    public var payload: String { #"{"orderId":"\#(orderId)"}"# }
}

/// The parameters of a job about several orders: `{"orderIds": ["…", …]}`.
public struct OrderBatchJob: JobParameters {
    public var orderIds: [OrderID]

    public init(orderIds: [OrderID]) { self.orderIds = orderIds }

    /// Written by hand, as `OrderJob`'s: one per reservation batch, on the writer's thread.
    public var payload: String { #"{"orderIds":["# + orderIds.map { #""\#($0)""# }.joined(separator: ",") + "]}" }
}

/// The parameters of a payment creation for several orders:
/// `{"orderIds": ["…", …], "traceParents": ["…", …]}`, the second only when an order was traced
/// (the W3C `traceparent` of each order's placement, `""` for one that was not), so that each
/// order's creation continues its own trace.
public struct PaymentBatchJob: JobParameters {
    public private(set) var orderIds: [OrderID]
    private var traceParents: [String]?

    public init(orderIds: [OrderID]) { self.orderIds = orderIds }

    /// Adds an order; a `traceParent` of other characters than a W3C one's (hex digits and
    /// dashes) is not kept.
    public mutating func append(_ id: OrderID, traceParent: String?) {
        let trace = traceParent.flatMap { Self.isWellFormed($0) ? $0 : nil }
        if trace != nil, traceParents == nil { traceParents = Array(repeating: "", count: orderIds.count) }
        orderIds.append(id)
        traceParents?.append(trace ?? "")
    }

    private static func isWellFormed(_ traceParent: String) -> Bool {
        traceParent.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) || $0 == 0x2D }
    }

    /// Each order with the trace of its placement, if it was traced.
    public var orders: [(id: OrderID, traceParent: String?)] {
        orderIds.indices.map { index in
            let trace = traceParents.flatMap { index < $0.count ? $0[index] : nil }
            return (orderIds[index], trace?.isEmpty == false ? trace : nil)
        }
    }

    /// Written by hand, as `OrderBatchJob`'s: ids are hex and dashes, a `traceparent` hex, dashes
    /// and digits (the engine passes only one it formatted itself).
    public var payload: String {
        var payload = #"{"orderIds":["# + orderIds.map { #""\#($0)""# }.joined(separator: ",") + "]"
        if let traceParents {
            payload += #","traceParents":["# + traceParents.map { #""\#($0)""# }.joined(separator: ",") + "]"
        }
        return payload + "}"
    }
}
