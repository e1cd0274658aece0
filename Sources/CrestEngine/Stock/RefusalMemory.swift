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
struct RefusalMemory<Refusal> {
    private struct Shard {
        var entries: [String: Refusal] = [:]
        var order: Deque<String> = []
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
        return shards[shardIndex(of: key, among: shards.count)].entries[key]
    }

    /// Remembers `refusal` for `key`, forgetting the shard's oldest beyond its share of the capacity.
    mutating func remember(_ refusal: Refusal, for key: String) {
        guard !shards.isEmpty else { return }
        let index = shardIndex(of: key, among: shards.count)
        if shards[index].entries.updateValue(refusal, forKey: key) == nil {
            shards[index].order.append(key)
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
        shards[shardIndex(of: key, among: shards.count)].entries[key] = nil
    }

    /// How many refusals are remembered.
    var count: Int { shards.reduce(0) { $0 + $1.entries.count } }

    /// The most refusals one shard holds: what one growth of storage may have to rehash.
    var largestShard: Int { shards.map(\.entries.count).max() ?? 0 }
}
