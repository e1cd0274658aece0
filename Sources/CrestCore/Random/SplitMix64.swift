/// A small, fast, reproducible random source (SplitMix64): the same seed gives the same sequence.
///
/// Used where a run must be repeatable — the simulator's faults, the load generator's buyers — not
/// for anything secret.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in 0..<1.
    public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    /// True with probability `rate` (never when `rate` ≤ 0).
    public mutating func chance(_ rate: Double) -> Bool { rate > 0 && unit() < rate }
}
