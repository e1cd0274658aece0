import CrestCore
import CrestFixtures
import CrestStore
import CrestTestSupport
import Foundation

/// Keeps more units than the operator put on sale: the engine then accepts orders for stock that
/// does not exist — an oversell, as a broken stock write would cause.
final class OversellingStore: ForwardingStore, @unchecked Sendable {
    let extra: Int64

    init(directory: URL, extra: Int64) throws {
        self.extra = extra
        super.init(try SQLiteStore(directory: directory))
    }

    override func createSale(_ sale: Sale) async throws {
        var inflated = sale
        inflated.stock.total += extra
        inflated.stock.available += extra
        try await inner.createSale(inflated)
    }
}

/// Forgets one acknowledged order: reads of it answer "not found" and listings leave it out, as if
/// its committed write had vanished.
final class LosingStore: ForwardingStore, @unchecked Sendable {
    /// Which reserved order (counting from 1) is lost.
    let victimNumber: Int
    private let reserved = Locked(0)
    let lost = Locked<OrderID?>(nil)

    init(directory: URL, victimNumber: Int) throws {
        self.victimNumber = victimNumber
        super.init(try SQLiteStore(directory: directory))
    }

    override func reserve(_ batch: [Reservation]) async throws -> ReservationBatchResult {
        let result = try await inner.reserve(batch)
        for reservation in batch {
            let number = reserved.withLock { count -> Int in
                count += 1
                return count
            }
            if number == victimNumber { lost.withLock { $0 = reservation.orderID } }
        }
        return result
    }

    override func order(_ id: OrderID) async throws -> Order? {
        id == lost.value ? nil : try await inner.order(id)
    }

    override func orders(matching filter: OrderFilter, after: OrderID?, limit: Int) async throws -> [Order] {
        try await inner.orders(matching: filter, after: after, limit: limit).filter { $0.id != lost.value }
    }
}

/// Stalls once: the reservation batch that comes after `after` has passed waits a whole second
/// before it commits, as a disk hiccup or a lock held by someone else would make it.
final class StallingStore: ForwardingStore, @unchecked Sendable {
    let stall: Duration
    private let armedAt = Locked<ContinuousClock.Instant?>(nil)
    private let stalled = Locked(false)

    init(directory: URL, stall: Duration) throws {
        self.stall = stall
        super.init(try SQLiteStore(directory: directory))
    }

    /// The next batch reserved at `instant` or later stalls.
    func arm(at instant: ContinuousClock.Instant) { armedAt.withLock { $0 = instant } }

    override func reserve(_ batch: [Reservation]) async throws -> ReservationBatchResult {
        let due = armedAt.withLock { armed -> Bool in
            guard let at = armed, ContinuousClock.now >= at else { return false }
            armed = nil
            return true
        }
        if due {
            stalled.withLock { $0 = true }
            try await Task.sleep(for: stall)
            defer { stallEnded.withLock { $0 = true } }
            return try await inner.reserve(batch)
        }
        return try await inner.reserve(batch)
    }

    var didStall: Bool { stalled.value }
    /// Set once the stalled batch has committed.
    let stallEnded = Locked(false)
}

/// Fails a run of reservation batches, as a store that loses its connection mid-commit would: the
/// first half of them commit and then report failure (the answer is lost), the rest fail without
/// committing. Crest answers 503 to their requests; whether each placed an order, the buyer learns
/// only by sending it again with its key.
final class FlakyStore: ForwardingStore, @unchecked Sendable {
    struct Unavailable: Error {}

    /// Which batches fail, counting from 1.
    let failing: Range<Int>
    private let batches = Locked(0)
    /// Orders committed by batches that then reported failure.
    let committedThenFailed = Locked(0)

    init(directory: URL, failing: Range<Int>) throws {
        self.failing = failing
        super.init(try SQLiteStore(directory: directory))
    }

    override func reserve(_ batch: [Reservation]) async throws -> ReservationBatchResult {
        let number = batches.withLock { count -> Int in
            count += 1
            return count
        }
        guard failing.contains(number) else { return try await inner.reserve(batch) }
        if number < failing.lowerBound + failing.count / 2 {
            let result = try await inner.reserve(batch)
            let created = result.outcomes.filter { if case .reserved = $0 { true } else { false } }.count
            committedThenFailed.withLock { $0 += created }
        }
        throw Unavailable()
    }
}
