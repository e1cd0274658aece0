import CrestCore
import Foundation

/// A timestamp as the API writes it: RFC 3339 in UTC with milliseconds (`2026-11-24T20:00:00.000Z`).
///
/// Response bodies carry timestamps as this already-formatted string, so the JSON encoder writes a
/// plain string instead of calling a custom date strategy for every date of every answer.
struct Timestamp: Codable, Sendable, Hashable {
    static let style = Date.rfc3339Style

    let text: String

    init(_ date: Date) {
        text = Self.format(date)
    }

    init(from decoder: any Decoder) throws {
        text = try decoder.singleValueContainer().decode(String.self)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }

    /// `Date.rfc3339Milliseconds` (CrestCore): the store's millisecond, with integer arithmetic.
    static func format(_ date: Date) -> String { date.rfc3339Milliseconds }
}
