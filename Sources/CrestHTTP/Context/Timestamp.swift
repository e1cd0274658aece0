import Foundation

/// A timestamp as the API writes it: RFC 3339 in UTC with milliseconds (`2026-11-24T20:00:00.000Z`).
///
/// Response bodies carry timestamps as this already-formatted string, so the JSON encoder writes a
/// plain string instead of calling a custom date strategy for every date of every answer.
struct Timestamp: Codable, Sendable, Hashable {
    static let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    let text: String

    init(_ date: Date) {
        text = date.formatted(Self.style)
    }

    init(from decoder: any Decoder) throws {
        text = try decoder.singleValueContainer().decode(String.self)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }
}
