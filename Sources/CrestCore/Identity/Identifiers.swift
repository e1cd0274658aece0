import Foundation

/// A time-ordered (UUIDv7) identifier of one kind of entity, rendered as a lower-case UUID string.
///
/// The phantom `Kind` keeps a sale id from being passed where an order id is expected.
public struct Identifier<Kind>: Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    public let uuid: UUID

    public init(_ uuid: UUID) { self.uuid = uuid }

    /// Parses a UUID string (any case); `nil` for anything else.
    ///
    /// Read by hand: every order request carries its sale's id in the path, and Foundation's
    /// parser (`sscanf` underneath) cost more than the stock gate.
    public init?(_ string: String) {
        var bytes = (
            UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0),
            UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0)
        )
        var text = string
        let parsed = text.withUTF8 { utf8 -> Bool in
            guard utf8.count == 36 else { return false }
            return withUnsafeMutableBytes(of: &bytes) { out in
                var index = 0
                for byte in 0..<16 {
                    if index == 8 || index == 13 || index == 18 || index == 23 {
                        guard utf8[index] == UInt8(ascii: "-") else { return false }
                        index += 1
                    }
                    guard let high = Self.hexValue(utf8[index]), let low = Self.hexValue(utf8[index + 1]) else {
                        return false
                    }
                    out[byte] = high << 4 | low
                    index += 2
                }
                return true
            }
        }
        guard parsed else { return nil }
        self.uuid = UUID(uuid: bytes)
    }

    private static func hexValue(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): character - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): character - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// A new identifier whose order follows creation time.
    public static func make(now: Date = Date()) -> Self { Self(TimeOrderedID.make(now: now)) }

    /// The canonical lower-case form, written straight from the bytes: ids are rendered for every
    /// row written and every JSON answer, so this skips `uuidString` and `lowercased()`.
    public var description: String {
        withUnsafeBytes(of: uuid.uuid) { bytes in
            String(unsafeUninitializedCapacity: 36) { buffer in
                let hex: StaticString = "0123456789abcdef"
                var out = 0
                for (index, byte) in bytes.enumerated() {
                    if index == 4 || index == 6 || index == 8 || index == 10 {
                        buffer[out] = UInt8(ascii: "-")
                        out += 1
                    }
                    buffer[out] = hex.utf8Start[Int(byte >> 4)]
                    buffer[out + 1] = hex.utf8Start[Int(byte & 0x0F)]
                    out += 2
                }
                return out
            }
        }
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.description < rhs.description }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        guard let id = Self(try container.decode(String.self)) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not a UUID")
        }
        self = id
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

public enum SaleKind {}
public enum OrderKind {}

/// Identifies a sale.
public typealias SaleID = Identifier<SaleKind>
/// Identifies an order.
public typealias OrderID = Identifier<OrderKind>
public enum EventKind {}
/// Identifies an outbox event; stable, so receivers can deduplicate deliveries.
public typealias EventID = Identifier<EventKind>
