import CrestCore
import Crypto
import Foundation
import Synchronization

/// What the verifier remembers of tokens it has seen, keyed by the SHA-256 of the token (the
/// token itself is never kept), each entry until a time. Bounded: at most `capacity` entries.
///
/// Sixteen shards, each under its own lock, so verifying buyers on every core rarely meet. When a
/// shard is full, its entries past their time are dropped; if it is still full, an arbitrary
/// eighth of it is dropped. A dropped pass costs one more signature check on its next use, nothing else.
final class PassMemory<Value: Sendable>: Sendable {
    private struct Entry {
        var value: Value
        var until: Date
    }

    private let entries: BoundedMap<TokenDigest, Entry>

    init(capacity: Int) {
        entries = BoundedMap(capacity: capacity)
    }

    /// The remembered value, if there is one still within its time.
    func value(for digest: TokenDigest, at now: Date) -> Value? {
        entries.withEntry(digest, expendable: { $0.until <= now }) { entry in
            guard let known = entry, known.until > now else {
                entry = nil
                return nil
            }
            return known.value
        }
    }

    func remember(_ value: Value, for digest: TokenDigest, until: Date, at now: Date) {
        guard until > now else { return }
        entries.withEntry(digest, expendable: { $0.until <= now }) { $0 = Entry(value: value, until: until) }
    }

    /// Entries held now (for tests and the metrics).
    var count: Int { entries.count }
}

/// A token by its SHA-256, in four words: what the memory keys by, so no token is kept.
struct TokenDigest: Hashable, Sendable {
    private var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    init(_ token: some StringProtocol) {
        var hasher = SHA256()
        // A token's bytes where they are (a header's value), copied only when they are not contiguous.
        if token.utf8.withContiguousStorageIfAvailable({ hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }) == nil {
            hasher.update(data: Data(token.utf8))
        }
        let hash = hasher.finalize()
        withUnsafeMutableBytes(of: &words) { out in hash.withUnsafeBytes { out.copyMemory(from: $0) } }
    }

    static func == (lhs: TokenDigest, rhs: TokenDigest) -> Bool {
        lhs.words.0 == rhs.words.0 && lhs.words.1 == rhs.words.1 && lhs.words.2 == rhs.words.2
            && lhs.words.3 == rhs.words.3
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(words.0)
        hasher.combine(words.1)
        hasher.combine(words.2)
        hasher.combine(words.3)
    }
}
