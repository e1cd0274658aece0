import Foundation
import Synchronization

/// Generates UUIDv7 identifiers (RFC 9562): 48 bits of Unix milliseconds, then randomness.
///
/// Ids sort by creation time, so primary-key indexes grow at their right edge and listings page
/// by id. Within one millisecond a counter in the random bits keeps ids of this process strictly
/// increasing.
public enum TimeOrderedID {
    private struct Clock {
        var lastMillis: UInt64 = 0
        var sequence: UInt16 = 0
    }

    private static let clock = Mutex(Clock())

    /// A new UUIDv7.
    public static func make(now: Date = Date()) -> UUID {
        let nowMillis = UInt64(max(0, now.timeIntervalSince1970 * 1000))
        let (millis, sequence) = clock.withLock { state -> (UInt64, UInt16) in
            if nowMillis > state.lastMillis {
                state.lastMillis = nowMillis
                state.sequence = UInt16.random(in: 0..<0x0800)
            } else {
                // Same millisecond, or the wall clock stepped back: keep counting from the last id.
                state.sequence &+= 1
                if state.sequence > 0x0FFF {
                    state.lastMillis += 1
                    state.sequence = 0
                }
            }
            return (state.lastMillis, state.sequence)
        }
        var random = SystemRandomNumberGenerator()
        let tail = random.next() as UInt64
        var bytes = [UInt8](repeating: 0, count: 16)
        for index in 0..<6 {
            bytes[index] = UInt8(truncatingIfNeeded: millis >> (8 * (5 - index)))
        }
        bytes[6] = 0x70 | UInt8(truncatingIfNeeded: sequence >> 8)
        bytes[7] = UInt8(truncatingIfNeeded: sequence)
        bytes[8] = 0x80 | UInt8(truncatingIfNeeded: tail >> 58)
        for index in 9..<16 {
            bytes[index] = UInt8(truncatingIfNeeded: tail >> (8 * (15 - index)))
        }
        return UUID(uuid: (
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
            bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
        ))
    }
}
