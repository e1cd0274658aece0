import Foundation

extension Date {
    /// This instant truncated to whole milliseconds: the precision Crest stores and returns, so a
    /// value compared in memory equals the value read back from a store.
    public var wholeMilliseconds: Date {
        Date(timeIntervalSince1970: Double(millisecondsSince1970) / 1000)
    }

    /// Whole milliseconds since 1970-01-01T00:00Z, rounded down: what the stores keep and the API
    /// shows.
    public var millisecondsSince1970: Int64 {
        Int64((timeIntervalSince1970 * 1000).rounded(.down))
    }
}

extension Duration {
    /// The duration in seconds, as a floating-point number.
    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
