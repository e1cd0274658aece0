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

    private let buckets: BoundedMap<Key, Bucket>

    init(capacity: Int) {
        buckets = BoundedMap(capacity: capacity)
    }

    /// Takes one token from `key`'s bucket under `limit`, at `now`.
    func take(_ key: Key, limit: RateLimit, at now: Date) -> BucketDecision {
        let rate = Double(limit.rate)
        let burst = Double(limit.burst)
        // A bucket that has filled up again is the same as none.
        let full = { (bucket: Bucket) in bucket.tokens + max(0, now.timeIntervalSince(bucket.updated)) * rate >= burst }
        return buckets.withEntry(key, expendable: full) { entry in
            var bucket = entry ?? Bucket(tokens: burst, updated: now)
            bucket.tokens = min(burst, bucket.tokens + max(0, now.timeIntervalSince(bucket.updated)) * rate)
            bucket.updated = now
            defer { entry = bucket }
            guard bucket.tokens >= 1 else {
                return .refused(retryAfter: max(1, Int(((1 - bucket.tokens) / rate).rounded(.up))))
            }
            bucket.tokens -= 1
            return .allowed(remaining: Int(bucket.tokens), reset: Int(((burst - bucket.tokens) / rate).rounded(.up)))
        }
    }

    /// `retryAfter` when `take` would refuse `key` now, without taking a token or making a bucket
    /// (a key without one has its whole burst); `nil` when it would let it through.
    func refusal(_ key: Key, limit: RateLimit, at now: Date) -> Int? {
        buckets.withEntry(key, expendable: { _ in false }) { entry in
            guard let bucket = entry else { return nil }
            let tokens = min(Double(limit.burst), bucket.tokens + max(0, now.timeIntervalSince(bucket.updated)) * Double(limit.rate))
            return tokens >= 1 ? nil : max(1, Int(((1 - tokens) / Double(limit.rate)).rounded(.up)))
        }
    }

    /// Buckets held now.
    var count: Int { buckets.count }
}
