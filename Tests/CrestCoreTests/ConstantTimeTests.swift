import CrestCore
import Testing

@Suite("Constant-time comparison of secrets")
struct ConstantTimeTests {
    /// Bytes that count how many of them were read.
    final class CountingBytes: Sequence {
        let bytes: [UInt8]
        private(set) var read = 0

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        func makeIterator() -> AnyIterator<UInt8> {
            var index = 0
            return AnyIterator {
                guard index < self.bytes.count else { return nil }
                defer { index += 1 }
                self.read += 1
                return self.bytes[index]
            }
        }
    }

    @Test("equal bytes are equal; a difference anywhere, or in length, is not")
    func answers() {
        let secret: [UInt8] = Array(0..<32)
        #expect(ConstantTime.equal(secret, secret))
        #expect(ConstantTime.equal([UInt8](), [UInt8]()))
        for position in secret.indices {
            var guess = secret
            guess[position] ^= 0x01
            #expect(!ConstantTime.equal(guess, secret), "differs at \(position)")
        }
        #expect(!ConstantTime.equal(secret.dropLast(), secret))
        #expect(!ConstantTime.equal(secret, secret + [0]))
        #expect(!ConstantTime.equal([UInt8](), secret))
    }

    @Test("every byte is read, wherever the first difference is (an early exit would read one)")
    func readsEveryByte() {
        let secret: [UInt8] = (0..<32).map { UInt8($0 * 7 % 256) }
        for position in [0, 1, 15, 31] {
            var wrong = secret
            wrong[position] ^= 0xFF
            let guess = CountingBytes(wrong)
            let expected = CountingBytes(secret)
            #expect(!ConstantTime.equal(guess, expected))
            #expect(guess.read == 32 && expected.read == 32, "first difference at \(position)")
        }
        let right = CountingBytes(secret)
        #expect(ConstantTime.equal(right, secret))
        #expect(right.read == 32)
    }
}
