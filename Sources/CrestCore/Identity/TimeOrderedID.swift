import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Generates UUIDv7 identifiers (RFC 9562): 48 bits of Unix milliseconds, then randomness.
///
/// Ids sort by creation time, so primary-key indexes grow at their right edge and listings page
/// by id. Within one millisecond a counter in the random bits keeps ids of this process strictly
/// increasing.
public enum TimeOrderedID {
    private struct Clock {
        var lastMillis: UInt64 = 0
        var sequence: UInt16 = 0
        /// System randomness drawn 64 words at a time: one `getrandom` call per 64 draws instead
        /// of one per id (the call was most of an id's cost on the order path).
        var random = RandomWords()
    }

    private static let clock = Mutex(Clock())

    /// A new UUIDv7.
    public static func make(now: Date = Date()) -> UUID {
        let nowMillis = UInt64(max(0, now.timeIntervalSince1970 * 1000))
        let (millis, sequence, tail) = clock.withLock { state -> (UInt64, UInt16, UInt64) in
            if nowMillis > state.lastMillis {
                state.lastMillis = nowMillis
                state.sequence = UInt16(truncatingIfNeeded: state.random.next() >> 53)  // 0..<0x0800
            } else {
                // Same millisecond, or the wall clock stepped back: keep counting from the last id.
                state.sequence &+= 1
                if state.sequence > 0x0FFF {
                    state.lastMillis += 1
                    state.sequence = 0
                }
            }
            return (state.lastMillis, state.sequence, state.random.next())
        }
        func byte(_ value: UInt64, _ shift: UInt64) -> UInt8 { UInt8(truncatingIfNeeded: value >> shift) }
        return UUID(
            uuid: (
                byte(millis, 40), byte(millis, 32), byte(millis, 24), byte(millis, 16), byte(millis, 8), byte(millis, 0),
                0x70 | byte(UInt64(sequence), 8), byte(UInt64(sequence), 0),
                0x80 | byte(tail, 58), byte(tail, 48), byte(tail, 40), byte(tail, 32), byte(tail, 24), byte(tail, 16),
                byte(tail, 8), byte(tail, 0)
            ))
    }
}

/// Words of the system's cryptographically secure randomness, fetched in blocks.
private struct RandomWords {
    private var words = [UInt64](repeating: 0, count: 64)
    private var used = 64

    mutating func next() -> UInt64 {
        if used == words.count {
            words.withUnsafeMutableBytes(Self.fill)
            used = 0
        }
        defer { used += 1 }
        return words[used]
    }

    private static func fill(_ bytes: UnsafeMutableRawBufferPointer) {
        #if canImport(Glibc)
        arc4random_buf(bytes.baseAddress!, bytes.count)  // glibc: getrandom(2), a block per call
        #else
        var system = SystemRandomNumberGenerator()
        for index in stride(from: 0, to: bytes.count, by: 8) {
            bytes.storeBytes(of: system.next() as UInt64, toByteOffset: index, as: UInt64.self)
        }
        #endif
    }
}
