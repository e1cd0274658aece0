import Foundation

extension Date {
    /// This instant truncated to whole milliseconds: the precision Crest stores and returns, so a
    /// value compared in memory equals the value read back from a store.
    public var wholeMilliseconds: Date {
        Date(timeIntervalSince1970: (timeIntervalSince1970 * 1000).rounded(.down) / 1000)
    }
}

extension Duration {
    /// The duration in seconds, as a floating-point number.
    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
