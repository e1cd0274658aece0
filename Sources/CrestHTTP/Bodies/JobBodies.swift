import CrestCore
import Foundation
import Hummingbird

/// A job as operators see it.
struct JobBody: Codable, ResponseEncodable {
    var id: JobID
    var kind: String
    /// The job's JSON payload as a JSON value (a string when it is not JSON).
    var payload: JSONValue
    var state: Job.State
    var attempt: Int
    var maxAttempts: Int
    var runAt: Timestamp
    var leaseUntil: Timestamp?
    var lastError: String?
    var uniqueKey: String?
    var createdAt: Timestamp
    var attemptedAt: Timestamp?
    var finalizedAt: Timestamp?

    init(_ job: Job) {
        id = job.id
        kind = job.kind
        payload = (try? JSONDecoder().decode(JSONValue.self, from: Data(job.payload.utf8))) ?? .string(job.payload)
        state = job.state
        attempt = job.attempt
        maxAttempts = job.maxAttempts
        runAt = Timestamp(job.runAt)
        leaseUntil = job.leaseUntil.map(Timestamp.init)
        lastError = job.lastError
        uniqueKey = job.uniqueKey
        createdAt = Timestamp(job.createdAt)
        attemptedAt = job.attemptedAt.map(Timestamp.init)
        finalizedAt = job.finalizedAt.map(Timestamp.init)
    }
}

struct JobPageBody: Codable, ResponseEncodable {
    var jobs: [JobBody]
    var next: JobID?
}

/// Any JSON value, to pass stored JSON through to an answer as JSON rather than as a string.
enum JSONValue: Codable, Hashable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}
