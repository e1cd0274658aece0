import Foundation

/// The JSON dialect of the API: camelCase keys, RFC 3339 timestamps in UTC with milliseconds
/// (`2026-11-24T20:00:00.000Z`); on input, fractional seconds are optional.
package enum CrestJSON {
    private static let withFraction = Timestamp.style
    private static let withoutFraction = Date.ISO8601FormatStyle()

    /// One shared encoder: configuring a `JSONEncoder` per request costs more than encoding a
    /// small body, and encoders are safe to share once configured.
    package static let sharedEncoder = encoder()
    /// One shared decoder, for the same reason.
    package static let sharedDecoder = decoder()

    package static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            try Timestamp(date).encode(to: encoder)
        }
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return encoder
    }

    package static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            if let date = try? withFraction.parse(text) { return date }
            if let date = try? withoutFraction.parse(text) { return date }
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "expected an RFC 3339 timestamp such as 2026-11-24T20:00:00Z")
        }
        return decoder
    }
}
