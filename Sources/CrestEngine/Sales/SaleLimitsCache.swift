import CrestCore
import Synchronization

/// Each sale's own rate limits, as last read from the store: every order attempt needs them, and
/// they change rarely (an operator's `PATCH`). Read again when older than `freshness`, so a change
/// made on another node applies here within it. Holds at most `capacity` sales (the oldest read
/// first out): an attempt on an unknown sale id must not grow it without bound.
final class SaleLimitsCache: Sendable {
    static let freshness: Duration = .seconds(2)
    private let capacity: Int
    private let entries = Mutex<[SaleID: (limits: SaleLimits, read: ContinuousClock.Instant)]>([:])

    init(capacity: Int = 4_096) {
        self.capacity = capacity
    }

    func fresh(_ id: SaleID, at now: ContinuousClock.Instant) -> SaleLimits? {
        entries.withLock { entries in
            guard let entry = entries[id], now - entry.read < Self.freshness else { return nil }
            return entry.limits
        }
    }

    func remember(_ limits: SaleLimits, of id: SaleID, at now: ContinuousClock.Instant) {
        entries.withLock { entries in
            if entries.count >= capacity, entries[id] == nil {
                entries = entries.filter { now - $0.value.read < Self.freshness }
                if entries.count >= capacity, let oldest = entries.min(by: { $0.value.read < $1.value.read }) {
                    entries[oldest.key] = nil
                }
            }
            entries[id] = (limits, now)
        }
    }
}
