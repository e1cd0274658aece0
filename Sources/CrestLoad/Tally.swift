import CrestCore
import Histogram
import NIOCore

/// An order the server accepted (answered 201 to a new attempt).
struct AcceptedOrder: Sendable {
    var key: String
    var buyer: String
    var quantity: Int
    /// Since the start of the load; `nil` for an order found by sending its attempt again after
    /// the load (when it was created is not known).
    var at: Duration?
}

/// An attempt whose fate is unknown: answered 503 (the store could not say whether its batch
/// committed; or another 5xx) or not answered at all. Sent again with its key after the load, it tells.
struct UnsettledAttempt: Sendable {
    var buyer: String
    var quantity: Int
}

/// An attempt that was answered, kept so that a later attempt can repeat it with the same key.
struct ReplayCandidate: Sendable {
    var key: String
    var buyer: String
    var quantity: Int
    /// The order it created, when it was accepted: a replay must answer with the same one.
    var orderID: String?
}

/// Everything the generator counts while it runs; one lock, held for a few hundred nanoseconds per answer.
struct Tally: Sendable {
    /// Microseconds, 1 µs to one hour, three significant digits.
    static func makeHistogram() -> Histogram<UInt64> {
        Histogram(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    }

    var latency = makeHistogram()
    /// Since the last progress line.
    var recent = makeHistogram()
    var attempts = 0
    var replays = 0
    /// "201", "201 replayed", "409 sold-out", "503 store-unavailable", "unanswered: timeout", …
    var outcomes: [String: Int] = [:]
    var unanswered = 0
    var serverErrors = 0
    /// Refusals for load (429, 503 overloaded or shed) whose attempt was sent again after `Retry-After`.
    var retriedAfterRefusal = 0
    var accepted: [String: AcceptedOrder] = [:]
    /// By idempotency key: attempts whose fate is not known yet (see ``UnsettledAttempt``).
    var unsettled: [String: UnsettledAttempt] = [:]
    /// Attempts sent again after the load, and the orders they found.
    var resent = 0
    var foundByResending = 0
    var replayMismatches: [String] = []
    var firstSoldOut: Duration?
    /// Orders accepted when the first sold-out answer came.
    var acceptedBeforeSoldOut = 0
    var lastAccepted: Duration?
    /// Ring of recent answered attempts that later attempts may repeat.
    var replayPool: [ReplayCandidate] = []
    var replayPoolNext = 0
    static let replayPoolSize = 4096

    mutating func recordLatency(_ elapsed: Duration) {
        let micros = UInt64(max(1, elapsed.seconds * 1_000_000))
        _ = latency.record(min(micros, latency.highestTrackableValue))
        _ = recent.record(min(micros, recent.highestTrackableValue))
    }

    /// An order the server named for a key: counted once, by its id.
    @discardableResult
    mutating func accept(_ orderID: String, key: String, buyer: String, quantity: Int, at elapsed: Duration?) -> Bool {
        guard accepted[orderID] == nil else { return false }
        accepted[orderID] = AcceptedOrder(key: key, buyer: buyer, quantity: quantity, at: elapsed)
        if let elapsed { lastAccepted = max(lastAccepted ?? elapsed, elapsed) }
        return true
    }

    mutating func remember(_ candidate: ReplayCandidate) {
        if replayPool.count < Self.replayPoolSize {
            replayPool.append(candidate)
        } else {
            replayPool[replayPoolNext] = candidate
            replayPoolNext = (replayPoolNext + 1) % Self.replayPoolSize
        }
    }
}

/// Reads one string member out of a compact JSON body without decoding all of it — a problem's
/// `type`, which appears once (member order is the encoder's choice, so only unique names are safe).
enum JSONPeek {
    static func string(_ member: String, in buffer: ByteBuffer) -> String? {
        let needle = Array("\"\(member)\":\"".utf8)
        // Over the raw bytes: the generic `firstRange(of:)` on a `ByteBufferView` cost the load
        // generator 9% of its CPU, reading every refusal's type.
        return buffer.withUnsafeReadableBytes { bytes -> String? in
            guard needle.count <= bytes.count else { return nil }
            var start = 0
            while start <= bytes.count - needle.count {
                guard let first = bytes[start...].firstIndex(of: needle[0]) else { return nil }
                guard first <= bytes.count - needle.count else { return nil }
                if needle.indices.allSatisfy({ bytes[first + $0] == needle[$0] }) {
                    let valueStart = first + needle.count
                    guard let end = bytes[valueStart...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
                    return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[valueStart..<end]), as: UTF8.self)
                }
                start = first + 1
            }
            return nil
        }
    }

    /// The last segment of a problem type (`urn:crest:problem:sold-out` → `sold-out`).
    static func problemKind(in buffer: ByteBuffer) -> String? {
        guard let type = string("type", in: buffer) else { return nil }
        return type.split(separator: ":").last.map(String.init) ?? type
    }
}
