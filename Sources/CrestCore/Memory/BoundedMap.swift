import Synchronization

/// A map from keys to values that holds at most `capacity` entries whatever the crowd of keys:
/// what admission remembers per buyer, per address or per pass (token buckets, velocity counts,
/// verified passes) must not grow with a crowd of 10⁶ distinct ones.
///
/// Sixteen shards, each under its own lock, so callers on every core rarely meet. When a new key
/// would pass its shard's share of the capacity, the shard's expendable entries go first (the
/// caller says which: a full bucket, an expired pass — the same as no entry); if the shard is
/// still full, an arbitrary eighth of it goes. What a dropped key loses is the caller's to
/// document (a fresh burst, one more signature check).
public final class BoundedMap<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    /// One shard's entries under its own lock (a class: a `Mutex` cannot be copied into an array).
    @usableFromInline final class Shard: Sendable {
        @usableFromInline let entries = Mutex<[Key: Value]>([:])

        init() {}
    }

    @usableFromInline static var shardCount: Int { 16 }

    @usableFromInline let shards: [Shard]
    @usableFromInline let shardCapacity: Int

    public init(capacity: Int) {
        precondition(capacity >= Self.shardCount, "a bounded map holds at least one entry per shard")
        shardCapacity = capacity / Self.shardCount
        shards = (0..<Self.shardCount).map { _ in Shard() }
    }

    /// Runs `body` on `key`'s entry (`nil` when there is none) under its shard's lock, and keeps
    /// what `body` leaves there (`nil` removes it). A new entry that takes the shard past its share
    /// makes room with `expendable` first, then by an arbitrary eighth; it stays.
    ///
    /// Inlinable, so that each caller's map is specialised for its keys and values (the verifier's
    /// memories spent a fifth of their time on generic metadata), and the entry is reached with one
    /// lookup, in place.
    @inlinable
    public func withEntry<Result>(
        _ key: Key, expendable: (Value) -> Bool, _ body: (inout Value?) throws -> Result
    ) rethrows -> Result {
        let capacity = shardCapacity
        return try shards[Int(UInt(bitPattern: key.hashValue) % UInt(Self.shardCount))].entries.withLock { entries in
            let result = try body(&entries[key])
            if entries.count > capacity {
                entries = entries.filter { $0.key == key || !expendable($0.value) }
                if entries.count > capacity {
                    for other in Array(entries.keys.lazy.filter { $0 != key }.prefix(max(1, capacity / 8))) {
                        entries[other] = nil
                    }
                }
                assert(entries.count <= capacity, "a bounded map shard past its capacity")
            }
            return result
        }
    }

    /// Entries held now.
    public var count: Int {
        var total = 0
        for shard in shards { total += shard.entries.withLock { $0.count } }
        return total
    }
}
