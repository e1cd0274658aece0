import CrestCore
import Foundation
import Synchronization

/// What a bucket said to one request.
enum BucketDecision: Sendable, Equatable {
    /// Let through; `remaining` whole requests are left now, the bucket is full again in `reset` s.
    case allowed(remaining: Int, reset: Int)
    /// Refused; one request gets through again in `retryAfter` seconds (rounded up).
    case refused(retryAfter: Int)
}

/// Token buckets by key (a buyer, an address, a sale), bounded in memory.
///
/// A bucket that has filled up again is the same as no bucket, so idle keys cost nothing: when a
/// shard reaches its share of `capacity`, its full buckets are dropped; if that is not enough (a
/// crowd of distinct keys all inside their window), an arbitrary eighth of the shard is dropped —
/// those keys start again with a full burst. Memory is bounded by `capacity` entries whatever the
/// crowd (about 100 bytes each with a short key); a refused key costs what an admitted one does.
final class TokenBuckets<Key: Hashable & Sendable>: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: Date
    }

    private final class Shard: Sendable {
        let buckets = Mutex<[Key: Bucket]>([:])
    }

    private static var shardCount: Int { 16 }

    private let shards: [Shard]
    private let shardCapacity: Int

    init(capacity: Int) {
        precondition(capacity >= Self.shardCount, "at least one bucket per shard")
        shardCapacity = capacity / Self.shardCount
        shards = (0..<Self.shardCount).map { _ in Shard() }
    }

    /// Takes one token from `key`'s bucket under `limit`, at `now`.
    func take(_ key: Key, limit: RateLimit, at now: Date) -> BucketDecision {
        let rate = Double(limit.rate)
        let burst = Double(limit.burst)
        let capacity = shardCapacity
        return shards[Int(UInt(bitPattern: key.hashValue) % UInt(Self.shardCount))].buckets.withLock { buckets in
            var bucket: Bucket
            if let known = buckets[key] {
                bucket = known
                bucket.tokens = min(burst, bucket.tokens + max(0, now.timeIntervalSince(bucket.updated)) * rate)
            } else {
                if buckets.count >= capacity { Self.makeRoom(in: &buckets, capacity: capacity, rate: rate, burst: burst, now: now) }
                bucket = Bucket(tokens: burst, updated: now)
            }
            bucket.updated = now
            guard bucket.tokens >= 1 else {
                buckets[key] = bucket
                return .refused(retryAfter: max(1, Int(((1 - bucket.tokens) / rate).rounded(.up))))
            }
            bucket.tokens -= 1
            buckets[key] = bucket
            return .allowed(remaining: Int(bucket.tokens), reset: Int(((burst - bucket.tokens) / rate).rounded(.up)))
        }
    }

    private static func makeRoom(
        in buckets: inout [Key: Bucket], capacity: Int, rate: Double, burst: Double, now: Date
    ) {
        buckets = buckets.filter { $0.value.tokens + max(0, now.timeIntervalSince($0.value.updated)) * rate < burst }
        if buckets.count >= capacity {
            for key in Array(buckets.keys.prefix(max(1, capacity / 8))) { buckets[key] = nil }
        }
    }

    /// Buckets held now.
    var count: Int {
        var total = 0
        for shard in shards { total += shard.buckets.withLock { $0.count } }
        return total
    }
}
