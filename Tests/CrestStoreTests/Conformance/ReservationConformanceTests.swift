import CrestCore
import CrestTestSupport
import Foundation
import Testing

@testable import CrestStore

@Suite("Store conformance: reservations")
struct ReservationConformanceTests {
    @Test("a reserved order is stored, with its created event and its expiry job; the sale's counters move", arguments: StoreKind.allCases)
    func reserved(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let sale = makeSale(stock: 3, perBuyerLimit: 2)
            try await store.createSale(sale)
            let batch = try await store.reserve([reservation(sale, key: "k1", buyer: "ana", quantity: 2)])
            guard case .reserved(let order) = batch.outcomes[0] else {
                Issue.record("\(batch.outcomes[0])")
                return
            }
            #expect(order.quantity == 2 && order.status == .pendingPayment && order.buyer == "ana")
            #expect(try await store.order(order.id) == order)
            #expect(try await store.order(saleID: sale.id, idempotencyKey: "k1") == order)
            #expect(try await store.order(saleID: sale.id, idempotencyKey: "k2") == nil)
            let counters = try #require(batch.counters[sale.id])
            #expect(counters.counters == StockCounters(total: 3, available: 1, reserved: 2, sold: 0))
            #expect(try await store.sale(sale.id)?.stock == counters.counters)
            #expect(try await store.events(of: order.id).map(\.kind) == [.created])
            let expiries = try await store.jobs(matching: JobFilter(kind: OrderJobs.expireBatch.name), after: nil, limit: 10)
            #expect(expiries.compactMap { try? OrderJobs.expireBatch.parameters(of: $0).orderIds } == [[order.id]])
            #expect(expiries.allSatisfy { $0.state == .scheduled && $0.runAt == order.expiresAt })
        }
    }

    @Test(
        "reads by id at once, beside reservations: each gets its own order or none, and an order reserved before its read is found",
        arguments: StoreKind.allCases)
    func readsAtOnce(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let sale = makeSale(stock: 1_000)
            try await store.createSale(sale)
            var known: [Order] = []
            for index in 0..<50 {
                known.append(
                    try #require(try await store.reserve([reservation(sale, key: "k\(index)", buyer: "b\(index)")]).outcomes[0].order))
            }
            let rounds = (store as? SQLiteStore)?.pointReadRounds ?? 0
            try await withThrowingTaskGroup(of: Void.self) { group in
                for round in 0..<4 {
                    for order in known {
                        group.addTask {
                            let found = try await store.order(order.id)
                            #expect(found == order)
                        }
                    }
                    for _ in 0..<20 {
                        group.addTask {
                            let found = try await store.order(OrderID.make(now: Date()))
                            #expect(found == nil)
                        }
                    }
                    // Each reserves an order and reads it back at once: no read misses a commit before it.
                    for index in 0..<10 {
                        group.addTask {
                            let placed = try #require(
                                try await store.reserve([reservation(sale, key: "r\(round)-\(index)", buyer: "r\(round)-\(index)")])
                                    .outcomes[0].order)
                            let found = try await store.order(placed.id)
                            #expect(found == placed)
                        }
                    }
                }
                try await group.waitForAll()
            }
            if let sqlite = store as? SQLiteStore {
                // 320 reads at once shared their turns (OrderPointReads; 15–39 rounds here, one each without).
                #expect(sqlite.pointReadRounds - rounds < 320, "\(sqlite.pointReadRounds - rounds) rounds for 320 reads")
            }
        }
    }

    @Test("a key seen earlier in the batch or in an earlier batch names its order and changes nothing", arguments: StoreKind.allCases)
    func duplicateKey(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let sale = makeSale(stock: 5, perBuyerLimit: 5)
            try await store.createSale(sale)
            let first = try await store.reserve([
                reservation(sale, key: "k1", buyer: "ana"),
                reservation(sale, key: "k1", buyer: "ana", quantity: 2),
            ])
            let order = try #require(first.outcomes[0].order)
            #expect(first.outcomes[1] == .duplicate(order))
            let counters = try #require(first.counters[sale.id])
            #expect(counters.counters.reserved == 1)
            let again = try await store.reserve([reservation(sale, key: "k1", buyer: "ana")])
            #expect(again.outcomes == [.duplicate(order)])
            #expect(again.counters[sale.id]?.version == counters.version)
            #expect(try await store.sale(sale.id)?.stock == counters.counters)
        }
    }

    @Test("a buyer at the sale's per-buyer limit is refused", arguments: StoreKind.allCases)
    func buyerLimit(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let sale = makeSale(stock: 5, perBuyerLimit: 2)
            try await store.createSale(sale)
            let outcomes = try await store.reserve([
                reservation(sale, key: "k1", buyer: "ana", quantity: 2),
                reservation(sale, key: "k2", buyer: "ana"),
                reservation(sale, key: "k3", buyer: "bob"),
            ]).outcomes
            #expect(outcomes[1] == .refused(.buyerLimitReached(limit: 2)))
            #expect(outcomes[2].order != nil, "another buyer is not limited by ana's orders")
        }
    }

    @Test("a quantity above what is left is refused as sold out; a smaller one still fits", arguments: StoreKind.allCases)
    func soldOut(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let sale = makeSale(stock: 3, perBuyerLimit: 2)
            try await store.createSale(sale)
            let outcomes = try await store.reserve([
                reservation(sale, key: "k1", buyer: "ana", quantity: 2),
                reservation(sale, key: "k2", buyer: "bob", quantity: 2),
                reservation(sale, key: "k3", buyer: "bob"),
                reservation(sale, key: "k4", buyer: "cid"),
            ]).outcomes
            #expect(outcomes[1] == .refused(.soldOut))
            #expect(outcomes[2].order?.quantity == 1)
            #expect(outcomes[3] == .refused(.soldOut))
            #expect(try await store.sale(sale.id)?.stock == StockCounters(total: 3, available: 0, reserved: 3, sold: 0))
        }
    }

    @Test("an attempt on an unknown sale is refused", arguments: StoreKind.allCases)
    func unknownSale(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let outcomes = try await store.reserve([reservation(makeSale(stock: 1), key: "k", buyer: "dan")]).outcomes
            #expect(outcomes == [.refused(.saleNotFound)])
        }
    }

    @Test(
        "one batch across sales: keys and buyers' limits are per sale, an earlier key replays, each sale's counters move once",
        arguments: StoreKind.allCases)
    func batchAcrossSales(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let phones = makeSale(stock: 2, perBuyerLimit: 1)
            let tickets = makeSale(stock: 3, perBuyerLimit: 2)
            try await store.createSale(phones)
            try await store.createSale(tickets)
            let earlier = try await store.reserve([reservation(phones, key: "early", buyer: "bob")])
            let bobs = try #require(earlier.outcomes[0].order)
            let phonesVersion = try #require(earlier.counters[phones.id]).version
            let batch = try await store.reserve([
                reservation(phones, key: "k1", buyer: "ana"),
                reservation(tickets, key: "k1", buyer: "ana", quantity: 2),  // the same key on another sale
                reservation(phones, key: "k2", buyer: "ana"),  // ana holds the phones' limit
                reservation(tickets, key: "early", buyer: "cid"),  // the phones' key, new on tickets
                reservation(phones, key: "early", buyer: "bob"),  // bob's earlier order
                reservation(makeSale(stock: 1), key: "k1", buyer: "dan"),
                reservation(phones, key: "k3", buyer: "eve"),
            ])
            let outcomes = batch.outcomes
            #expect(outcomes[0].order?.saleID == phones.id)
            #expect(outcomes[1].order?.saleID == tickets.id && outcomes[1].order?.quantity == 2)
            #expect(outcomes[2] == .refused(.buyerLimitReached(limit: 1)))
            #expect(outcomes[3].order?.saleID == tickets.id && outcomes[3].order?.buyer == "cid")
            #expect(outcomes[4] == .duplicate(bobs))
            #expect(outcomes[5] == .refused(.saleNotFound))
            #expect(outcomes[6] == .refused(.soldOut))
            let phonesAfter = try #require(batch.counters[phones.id])
            let ticketsAfter = try #require(batch.counters[tickets.id])
            #expect(phonesAfter.counters == StockCounters(total: 2, available: 0, reserved: 2, sold: 0))
            #expect(ticketsAfter.counters == StockCounters(total: 3, available: 0, reserved: 3, sold: 0))
            #expect(phonesAfter.version == phonesVersion + 1, "one move of the phones' counters for the batch")
            #expect(try await store.sale(phones.id)?.stock == phonesAfter.counters)
            #expect(try await store.sale(tickets.id)?.stock == ticketsAfter.counters)
            for order in [0, 1, 3].compactMap({ outcomes[$0].order }) {
                #expect(try await store.order(order.id) == order)
                #expect(try await store.events(of: order.id).map(\.kind) == [.created])
            }
            #expect(try await store.order(saleID: tickets.id, idempotencyKey: "k1")?.buyer == "ana")
        }
    }

    @Test("an attempt before the sale opens is refused with its start", arguments: StoreKind.allCases)
    func notOpen(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let later = makeSale(stock: 5, startsAt: millisecondNow(3600))
            try await store.createSale(later)
            let outcomes = try await store.reserve([reservation(later, key: "k", buyer: "eve")]).outcomes
            #expect(outcomes == [.refused(.saleNotOpen(startsAt: later.startsAt))])
        }
    }

    @Test("an attempt after the sale ends is refused", arguments: StoreKind.allCases)
    func closed(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let over = makeSale(stock: 5, endsAt: millisecondNow(-0.5))
            try await store.createSale(over)
            let outcomes = try await store.reserve([reservation(over, key: "k", buyer: "fay")]).outcomes
            #expect(outcomes == [.refused(.saleClosed)])
        }
    }

    @Test("the gate's snapshot holds the buyers' holdings, the keys and the counters' version", arguments: StoreKind.allCases)
    func gateSnapshot(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let sale = makeSale(stock: 3, perBuyerLimit: 2)
            let other = makeSale(stock: 5)
            for sale in [sale, other] { try await store.createSale(sale) }
            let batch = try await store.reserve([
                reservation(sale, key: "k1", buyer: "ana", quantity: 2),
                reservation(sale, key: "k2", buyer: "bob"),
                reservation(sale, key: "k3", buyer: "cid"),
            ])
            let snapshot = try #require(try await store.gateSnapshot(for: sale.id))
            #expect(snapshot.holdings == ["ana": 2, "bob": 1])
            #expect(Set(snapshot.idempotencyKeys) == ["k1", "k2"])
            #expect(snapshot.version == batch.counters[sale.id]?.version)
            #expect(try await store.holdings(of: "ana", in: sale.id) == 2)
            #expect(try await store.holdings(of: "cid", in: sale.id) == 0)
            #expect(try await store.holdings(of: "ana", in: other.id) == 0)
            #expect(try await store.gateSnapshot(for: .make()) == nil)
        }
    }

    @Test("a request's own per-buyer limit (a buyer pass's) replaces the sale's", arguments: StoreKind.allCases)
    func requestLimit(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let sale = makeSale(stock: 10)
            try await store.createSale(sale)
            var request = reservation(sale, key: "eve-1", buyer: "eve", quantity: 3)
            request.request.perBuyerLimit = 3
            #expect(try await store.reserve([request]).outcomes[0].order?.quantity == 3)
            #expect(
                try await store.reserve([reservation(sale, key: "fay-1", buyer: "fay", quantity: 2)]).outcomes
                    == [.refused(.quantityAboveLimit(limit: 1))])
        }
    }
}

@Suite("Store conformance: cancelling an attempt")
struct AttemptCancellationConformanceTests {
    @Test("cancelling a placed attempt cancels its order", arguments: StoreKind.allCases)
    func placed(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let sale = makeSale(stock: 5)
            try await store.createSale(sale)
            let placed = try #require(try await store.reserve([reservation(sale, key: "placed", buyer: "ana")]).outcomes[0].order)
            let now = millisecondNow()
            guard case .order(let cancelled) = try await store.cancelAttempt(saleID: sale.id, idempotencyKey: "placed", buyer: nil, at: now)
            else {
                Issue.record("the placed attempt was not cancelled")
                return
            }
            #expect(cancelled.order.id == placed.id && cancelled.order.status == .cancelled)
            #expect(try await store.sale(sale.id)?.stock.available == 5)
        }
    }

    @Test("cancelling an unplaced attempt records its key once and refuses the key from then on", arguments: StoreKind.allCases)
    func unplaced(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let sale = makeSale(stock: 5)
            try await store.createSale(sale)
            let now = millisecondNow()
            guard case .recorded(let at) = try await store.cancelAttempt(saleID: sale.id, idempotencyKey: "never", buyer: nil, at: now)
            else {
                Issue.record("the unplaced attempt was not recorded")
                return
            }
            #expect(at == now)
            guard
                case .recorded(let again) = try await store.cancelAttempt(saleID: sale.id, idempotencyKey: "never", buyer: nil, at: now + 5)
            else {
                Issue.record("the repeat was not recorded")
                return
            }
            #expect(again == now, "the first record's time")
            #expect(try await store.reserve([reservation(sale, key: "never", buyer: "bob")]).outcomes == [.refused(.attemptCancelled)])
        }
    }

    @Test("cancelling an attempt in an unknown sale is refused", arguments: StoreKind.allCases)
    func unknownSale(kind: StoreKind) async throws {
        try await kind.withStore { store in
            await #expect(throws: OrderError.saleNotFound) {
                try await store.cancelAttempt(saleID: .make(), idempotencyKey: "x", buyer: nil, at: millisecondNow())
            }
        }
    }

    @Test("a buyer's cancel by key leaves another buyer's order with that key alone", arguments: StoreKind.allCases)
    func otherBuyersOrder(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let sale = makeSale(stock: 10)
            try await store.createSale(sale)
            let anas = try #require(try await store.reserve([reservation(sale, key: "shared", buyer: "ana")]).outcomes[0].order)
            guard
                case .recorded = try await store.cancelAttempt(
                    saleID: sale.id, idempotencyKey: "shared", buyer: "bob", at: millisecondNow())
            else {
                Issue.record("bob's cancel touched ana's order")
                return
            }
            #expect(try await store.order(anas.id)?.status == .pendingPayment)
        }
    }

    @Test("a buyer's cancelled key refuses that buyer's late attempt, not another buyer's", arguments: StoreKind.allCases)
    func buyersRecord(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let sale = makeSale(stock: 10)
            try await store.createSale(sale)
            guard
                case .recorded = try await store.cancelAttempt(saleID: sale.id, idempotencyKey: "lost", buyer: "bob", at: millisecondNow())
            else {
                Issue.record("bob's unplaced attempt was not recorded")
                return
            }
            #expect(try await store.reserve([reservation(sale, key: "lost", buyer: "bob")]).outcomes == [.refused(.attemptCancelled)])
            let cids = try await store.reserve([reservation(sale, key: "lost", buyer: "cid")]).outcomes[0]
            #expect(cids.order?.buyer == "cid", "\(cids)")
        }
    }

    @Test("an operator's cancelled key refuses every buyer's attempt", arguments: StoreKind.allCases)
    func operatorsRecord(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let sale = makeSale(stock: 10)
            try await store.createSale(sale)
            _ = try await store.cancelAttempt(saleID: sale.id, idempotencyKey: "op", buyer: nil, at: millisecondNow())
            for buyer in ["dan", "eve"] {
                #expect(try await store.reserve([reservation(sale, key: "op", buyer: buyer)]).outcomes == [.refused(.attemptCancelled)])
            }
        }
    }
}
