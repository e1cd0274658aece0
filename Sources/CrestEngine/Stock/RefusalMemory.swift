import DequeModule

/// The refusals a stock gate remembers, so that a replayed key gets the same answer: at most
/// `capacity` of them, the oldest forgotten first.
///
/// A sold-out sale refuses the whole crowd, hundreds of thousands of keys. Kept in one dictionary,
/// each doubling of its storage rehashed every entry in a single insert — 250 ms at 786,432 keys,
/// measured — under the gate's lock, so every request of the sale waited for it. The keys are
/// spread over shards by hash instead, each holding at most about a thousand, so a growth rehashes
/// one small shard. Order is kept per shard: the oldest refusal of a full shard goes first, which
/// is the oldest overall to within the spread of the hash.
///
/// Keys are kept as their hashes, as the gate's known keys are, and the gate keeps 16 bytes per
/// refusal: with the key's and the buyer's strings a refusal cost ≈ 150 bytes of the server's RSS
/// under a sold-out load, ≈ 70 now — 150 MB against 70 MB for a crowd of a million. Two keys of one
/// sale sharing a 64-bit hash would share a remembered refusal; at a million keys the odds are
/// about 1 in 3 × 10⁷.
struct RefusalMemory<Refusal> {
    private struct Shard {
        var entries: [Int: Refusal] = [:]
        var order: Deque<Int> = []
    }

    private var shards: [Shard]
    private let perShard: Int

    /// About a thousand keys per shard, at most 1,024 shards; no shard for a capacity of 0.
    init(capacity: Int) {
        let count = capacity > 0 ? min(1024, max(1, capacity / 1000)) : 0
        shards = Array(repeating: Shard(), count: count)
        perShard = count > 0 ? (capacity + count - 1) / count : 0
    }

    subscript(key: String) -> Refusal? {
        guard !shards.isEmpty else { return nil }
        let hash = key.hashValue
        return shards[shardIndex(of: hash, among: shards.count)].entries[hash]
    }

    /// Remembers `refusal` for `key`, forgetting the shard's oldest beyond its share of the capacity.
    mutating func remember(_ refusal: Refusal, for key: String) {
        guard !shards.isEmpty else { return }
        let hash = key.hashValue
        let index = shardIndex(of: hash, among: shards.count)
        if shards[index].entries.updateValue(refusal, forKey: hash) == nil {
            shards[index].order.append(hash)
        }
        while shards[index].order.count > perShard, let oldest = shards[index].order.popFirst() {
            shards[index].entries[oldest] = nil
        }
    }

    /// Forgets `key` now. Its place in the shard's order stays until its turn comes (a later
    /// refusal of the same key is then forgotten sooner than its turn, which only means it is
    /// decided again).
    mutating func forget(_ key: String) {
        guard !shards.isEmpty else { return }
        let hash = key.hashValue
        shards[shardIndex(of: hash, among: shards.count)].entries[hash] = nil
    }

    /// How many refusals are remembered.
    var count: Int { shards.reduce(0) { $0 + $1.entries.count } }

    /// The most refusals one shard holds: what one growth of storage may have to rehash.
    var largestShard: Int { shards.map(\.entries.count).max() ?? 0 }
}
