import Foundation

/// A time-ordered (UUIDv7) identifier of one kind of entity, rendered as a lower-case UUID string.
///
/// The phantom `Kind` keeps a sale id from being passed where an order id is expected.
public struct Identifier<Kind>: Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    public let uuid: UUID

    public init(_ uuid: UUID) { self.uuid = uuid }

    /// Parses a UUID string (any case); `nil` for anything else.
    public init?(_ string: String) {
        guard let uuid = UUID(uuidString: string) else { return nil }
        self.uuid = uuid
    }

    /// A new identifier whose order follows creation time.
    public static func make(now: Date = Date()) -> Self { Self(TimeOrderedID.make(now: now)) }

    public var description: String { uuid.uuidString.lowercased() }

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
