import CrestCore
import Synchronization

/// Each sale's own rate limits, as last read from the store: every order attempt needs them, and
/// they change rarely (an operator's `PATCH`). Read again when older than `freshness`, so a change
/// made on another node applies here within it; while one attempt reads them again, the others
/// take the limits last read rather than each asking the store — under a crowd such a stampede every
/// `freshness` had each attempt of the moment wait for the store and then for a turn of the task
/// pool. Holds at most `capacity` sales (the oldest read first out): an attempt on an unknown sale
/// id must not grow it without bound.
final class SaleLimitsCache: Sendable {
    static let freshness: Duration = .seconds(2)

    enum Lookup: Equatable {
        /// Read within `freshness`.
        case fresh(SaleLimits)
        /// Older: the caller reads them again and remembers them (or calls `failedToRead`); until
        /// then others get `.stale`.
        case readAgain
        /// Older, and another caller is reading them again: these are the limits last read.
        case stale(SaleLimits)
        /// Never read, or forgotten: the caller reads them (each such caller does).
        case unknown
    }

    private struct Entry {
        var limits: SaleLimits
        var read: ContinuousClock.Instant
        var reading = false
    }

    private let capacity: Int
    private let entries = Mutex<[SaleID: Entry]>([:])

    init(capacity: Int = 4_096) {
        self.capacity = capacity
    }

    func fresh(_ id: SaleID, at now: ContinuousClock.Instant) -> SaleLimits? {
        entries.withLock { entries in
            guard let entry = entries[id], now - entry.read < Self.freshness else { return nil }
            return entry.limits
        }
    }

    func lookup(_ id: SaleID, at now: ContinuousClock.Instant) -> Lookup {
        entries.withLock { entries in
            guard let entry = entries[id] else { return .unknown }
            if now - entry.read < Self.freshness { return .fresh(entry.limits) }
            if entry.reading { return .stale(entry.limits) }
            entries[id]?.reading = true
            return .readAgain
        }
    }

    /// The read that `.readAgain` asked for failed: the next caller tries.
    func failedToRead(_ id: SaleID) {
        entries.withLock { $0[id]?.reading = false }
    }

    /// Keeps `limits` as read at `now`, unless what is kept was read later (an operator's change
    /// remembered while an older read was on its way).
    func remember(_ limits: SaleLimits, of id: SaleID, at now: ContinuousClock.Instant) {
        entries.withLock { entries in
            if let kept = entries[id], kept.read > now {
                entries[id]?.reading = false
                return
            }
            if entries.count >= capacity, entries[id] == nil {
                entries = entries.filter { now - $0.value.read < Self.freshness }
                if entries.count >= capacity, let oldest = entries.min(by: { $0.value.read < $1.value.read }) {
                    entries[oldest.key] = nil
                }
            }
            entries[id] = Entry(limits: limits, read: now)
        }
    }
}
