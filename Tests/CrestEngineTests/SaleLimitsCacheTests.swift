import CrestCore
import Testing

@testable import CrestEngine

@Suite("A sale's limits in memory")
struct SaleLimitsCacheTests {
    let sale = SaleID.make()
    let start = ContinuousClock.now
    let old = SaleLimits(perBuyer: RateLimit(rate: 1, burst: 1))
    let new = SaleLimits(perBuyer: RateLimit(rate: 5, burst: 5))

    @Test("once older than their freshness, one attempt reads them again while the others take the last read")
    func oneReadAtATime() {
        let cache = SaleLimitsCache()
        #expect(cache.lookup(sale, at: start) == .unknown)
        #expect(cache.lookup(sale, at: start) == .unknown, "no limits to give meanwhile: each caller reads")
        cache.remember(old, of: sale, at: start)
        #expect(cache.lookup(sale, at: start + .seconds(1)) == .fresh(old))

        let later = start + SaleLimitsCache.freshness
        #expect(cache.lookup(sale, at: later) == .readAgain)
        for _ in 0..<100 { #expect(cache.lookup(sale, at: later) == .stale(old)) }
        #expect(cache.fresh(sale, at: later) == nil, "those who must not wait for a read are not given stale limits")
        cache.remember(new, of: sale, at: later)
        #expect(cache.lookup(sale, at: later + .milliseconds(1)) == .fresh(new))
    }

    @Test("a read that failed leaves the next attempt to read again")
    func failedRead() {
        let cache = SaleLimitsCache()
        cache.remember(old, of: sale, at: start)
        let later = start + SaleLimitsCache.freshness
        #expect(cache.lookup(sale, at: later) == .readAgain)
        #expect(cache.lookup(sale, at: later) == .stale(old))
        cache.failedToRead(sale)
        #expect(cache.lookup(sale, at: later) == .readAgain)
    }

    @Test("an operator's change is not overwritten by a read that started before it")
    func olderReadLoses() {
        let cache = SaleLimitsCache()
        cache.remember(old, of: sale, at: start)
        let readStarted = start + SaleLimitsCache.freshness
        #expect(cache.lookup(sale, at: readStarted) == .readAgain)
        cache.remember(new, of: sale, at: readStarted + .milliseconds(5))  // the PATCH
        cache.remember(old, of: sale, at: readStarted)  // the read, answered after it
        #expect(cache.lookup(sale, at: readStarted + .milliseconds(10)) == .fresh(new))
        // …and the next read after the freshness is asked for, not left waiting on the lost one.
        #expect(cache.lookup(sale, at: readStarted + .milliseconds(5) + SaleLimitsCache.freshness) == .readAgain)
    }
}
