/// Comparison of secrets whose duration does not depend on where they differ.
///
/// `==` on byte arrays stops at the first differing byte, so the time it takes tells an attacker
/// how many leading bytes of a guess were right. `equal` reads every byte of both inputs and folds
/// the differences with `|`, without a branch on their values.
public enum ConstantTime {
    /// Whether `a` and `b` hold the same bytes. Inputs of different lengths are unequal, found once
    /// the shorter one ends (a length is rarely secret: callers compare digests or MACs of one size).
    public static func equal<A: Sequence<UInt8>, B: Sequence<UInt8>>(_ a: A, _ b: B) -> Bool {
        var difference: UInt8 = 0
        var left = a.makeIterator()
        var right = b.makeIterator()
        while true {
            switch (left.next(), right.next()) {
            case (let x?, let y?): difference |= x ^ y
            case (nil, nil): return difference == 0
            case (.some, nil), (nil, .some): return false
            }
        }
    }
}
