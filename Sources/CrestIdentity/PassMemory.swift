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

    /// One shard's entries under its own lock (a class: a `Mutex` cannot be copied into an array).
    private final class Shard: Sendable {
        let entries = Mutex<[TokenDigest: Entry]>([:])
    }

    private static var shardCount: Int { 16 }

    private let shards: [Shard]
    private let shardCapacity: Int

    init(capacity: Int) {
        precondition(capacity >= Self.shardCount, "a pass memory holds at least one entry per shard")
        shardCapacity = capacity / Self.shardCount
        shards = (0..<Self.shardCount).map { _ in Shard() }
    }

    /// The remembered value, if there is one still within its time.
    func value(for digest: TokenDigest, at now: Date) -> Value? {
        shards[digest.shard].entries.withLock { entries in
            guard let entry = entries[digest] else { return nil }
            guard entry.until > now else {
                entries[digest] = nil
                return nil
            }
            return entry.value
        }
    }

    func remember(_ value: Value, for digest: TokenDigest, until: Date, at now: Date) {
        guard until > now else { return }
        let capacity = shardCapacity
        shards[digest.shard].entries.withLock { entries in
            if entries.count >= capacity, entries[digest] == nil {
                entries = entries.filter { $0.value.until > now }
                if entries.count >= capacity {
                    for key in Array(entries.keys.prefix(max(1, capacity / 8))) { entries[key] = nil }
                }
            }
            entries[digest] = Entry(value: value, until: until)
            assert(entries.count <= capacity, "a pass memory shard past its capacity")
        }
    }

    /// Entries held now (for tests and the metrics).
    var count: Int {
        var total = 0
        for shard in shards { total += shard.entries.withLock { $0.count } }
        return total
    }
}

/// A token by its SHA-256, in four words: what the memory keys by, so no token is kept.
struct TokenDigest: Hashable, Sendable {
    private var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    init(_ token: some StringProtocol) {
        let hash = SHA256.hash(data: Data(token.utf8))
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

    /// Which of the memory's sixteen shards holds it (the digest is uniform already).
    var shard: Int { Int(truncatingIfNeeded: words.0 & 15) }
}
