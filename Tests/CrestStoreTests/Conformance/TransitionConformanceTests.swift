import CrestCore
import CrestStore
import CrestTestSupport
import Foundation
import Testing

@Suite("Store conformance: order transitions")
struct TransitionConformanceTests {
    /// A sale of 5 and `count` pending orders of one unit, each by its own buyer (b1, b2, …).
    static func pendingOrders(_ count: Int, on store: any Store) async throws -> (Sale, [Order]) {
        let sale = makeSale(stock: 5)
        try await store.createSale(sale)
        let placed = try await store.reserve((1...count).map { reservation(sale, key: "k\($0)", buyer: "b\($0)") })
        return (sale, placed.outcomes.compactMap(\.order))
    }

    @Test(
        "orders read at once: each that exists by its id, as read alone; an unknown id is absent; none asked, none read",
        arguments: StoreKind.allCases)
    func readAtOnce(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (_, orders) = try await Self.pendingOrders(3, on: store)
            _ = try await store.transition(orders[1].id, by: .pay, at: millisecondNow())
            let unknown = OrderID.make()
            let read = try await store.orders(ids: [orders[2].id, unknown, orders[0].id, orders[1].id])
            #expect(Set(read.keys) == Set(orders.map(\.id)))
            for order in orders {
                let alone = try await store.order(order.id)
                #expect(read[order.id] == alone)
            }
            #expect(read[orders[1].id]?.status == .paid)
            #expect(try await store.orders(ids: []).isEmpty)
        }
    }

    @Test("a transition applies once, a repeat changes nothing, an unknown order has no result", arguments: StoreKind.allCases)
    func appliedOnce(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (sale, orders) = try await Self.pendingOrders(1, on: store)
            let results = try await store.transitions(
                [
                    TransitionRequest(orderID: orders[0].id, event: .pay),
                    TransitionRequest(orderID: orders[0].id, event: .pay),
                    TransitionRequest(orderID: .make(), event: .expire),
                ], at: millisecondNow())
            #expect(results[0]?.change == .applied && results[0]?.order.status == .paid)
            #expect(results[1]?.change == .repeated)
            #expect(results[1]?.counters.counters == results[0]?.counters.counters)
            #expect(results[2] == nil)
            #expect(try await store.sale(sale.id)?.stock == StockCounters(total: 5, available: 4, reserved: 0, sold: 1))
        }
    }

    @Test("a refused transition changes no stock and flags the order with the reason", arguments: StoreKind.allCases)
    func refused(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (sale, orders) = try await Self.pendingOrders(1, on: store)
            let results = try await store.transitions(
                [
                    TransitionRequest(orderID: orders[0].id, event: .cancel),
                    TransitionRequest(orderID: orders[0].id, event: .pay),
                ], at: millisecondNow())
            #expect(results[0]?.change == .applied && results[0]?.order.status == .cancelled)
            #expect(results[1]?.change == .refused)
            #expect(results[1]?.order.flag?.reason == .confirmAfterCancel)
            #expect(results[1]?.counters.counters == StockCounters(total: 5, available: 5, reserved: 0, sold: 0))
            #expect(try await store.sale(sale.id)?.stock == results[1]?.counters.counters)
            #expect(try await store.order(orders[0].id)?.flag?.reason == .confirmAfterCancel)
        }
    }

    @Test(
        "transitions move stock: paying sells, cancelling and expiring give back, a refund after expiry gives nothing more",
        arguments: StoreKind.allCases)
    func stockMoves(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (sale, orders) = try await Self.pendingOrders(3, on: store)
            let now = millisecondNow()
            let paid = try await store.transition(orders[0].id, by: .pay, at: now)
            #expect(paid.counters.counters == StockCounters(total: 5, available: 2, reserved: 2, sold: 1))
            let cancelled = try await store.transition(orders[1].id, by: .cancel, at: now)
            #expect(cancelled.counters.counters == StockCounters(total: 5, available: 3, reserved: 1, sold: 1))
            #expect(cancelled.counters.version > paid.counters.version)
            let expired = try await store.transition(orders[2].id, by: .expire, at: now)
            #expect(expired.order.status == .expired && expired.counters.counters.available == 4)
            let refunded = try await store.transition(orders[2].id, by: .refund, at: now)
            #expect(refunded.order.status == .refunded && refunded.counters.counters.available == 4)
            #expect(try await store.sale(sale.id)?.stock == refunded.counters.counters)
        }
    }

    @Test("each applied transition writes one event, numbered in order", arguments: StoreKind.allCases)
    func events(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (_, orders) = try await Self.pendingOrders(2, on: store)
            let now = millisecondNow()
            _ = try await store.transition(orders[0].id, by: .pay, at: now)
            _ = try await store.transition(orders[0].id, by: .pay, at: now)
            _ = try await store.transition(orders[1].id, by: .expire, at: now)
            _ = try await store.transition(orders[1].id, by: .refund, at: now)
            #expect(try await store.events(of: orders[0].id).map(\.kind) == [.created, .paid])
            #expect(try await store.events(of: orders[1].id).map(\.kind) == [.created, .expired, .refunded])
            #expect(try await store.events(of: orders[1].id).map(\.sequence) == [1, 2, 3])
        }
    }

    @Test("a transition of an unknown order is refused as not found", arguments: StoreKind.allCases)
    func unknownOrder(kind: StoreKind) async throws {
        try await kind.withStore { store in
            await #expect(throws: OrderError.orderNotFound) { try await store.transition(.make(), by: .pay, at: millisecondNow()) }
        }
    }

    @Test("the per-buyer limit counts paid and pending orders, not ended ones", arguments: StoreKind.allCases)
    func holdings(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (sale, orders) = try await Self.pendingOrders(4, on: store)
            let now = millisecondNow()
            _ = try await store.transition(orders[0].id, by: .pay, at: now)
            _ = try await store.transition(orders[1].id, by: .cancel, at: now)
            _ = try await store.transition(orders[2].id, by: .expire, at: now)
            var held: [Int] = []
            for buyer in ["b1", "b2", "b3", "b4"] { held.append(try await store.holdings(of: buyer, in: sale.id)) }
            #expect(held == [1, 0, 0, 1])
        }
    }

    @Test("orders are listed by sale, status or flag, a page after a given id", arguments: StoreKind.allCases)
    func listed(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (sale, orders) = try await Self.pendingOrders(3, on: store)
            let now = millisecondNow()
            _ = try await store.transition(orders[0].id, by: .pay, at: now)
            _ = try await store.transition(orders[1].id, by: .cancel, at: now)
            _ = try await store.transition(orders[1].id, by: .pay, at: now)  // refused: flags it
            let flagged = try await store.orders(matching: OrderFilter(flaggedOnly: true), after: nil, limit: 10)
            #expect(flagged.map(\.id) == [orders[1].id])
            let paid = try await store.orders(matching: OrderFilter(saleID: sale.id, status: .paid), after: nil, limit: 10)
            #expect(paid.map(\.id) == [orders[0].id])
            let all = try await store.orders(matching: OrderFilter(saleID: sale.id), after: nil, limit: 2)
            #expect(all.map(\.id) == orders.prefix(2).map(\.id))
            let rest = try await store.orders(matching: OrderFilter(saleID: sale.id), after: all.last?.id, limit: 2)
            #expect(rest.map(\.id) == [orders[2].id])
            #expect(try await store.orders(matching: OrderFilter(saleID: .make()), after: nil, limit: 10).isEmpty)
        }
    }

    @Test(
        "a sale's orders in pages among more orders than a listing scans in id order: a dense sale, a sparse one, by status, every order once and in id order",
        arguments: StoreKind.allCases)
    func listedInPages(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let dense = makeSale(stock: 10_000)
            let sparse = makeSale(stock: 10_000)
            try await store.createSale(dense)
            try await store.createSale(sparse)
            // 5,100 orders (the SQLite store scans 4,000 in id order before it asks the sales'
            // index): every 50th of sparse, the rest of dense, in creation order.
            var placed: [Order] = []
            for batch in stride(from: 0, to: 5_100, by: 850) {
                let time = millisecondNow()
                let reservations = (batch..<batch + 850).map { index in
                    reservation(index % 50 == 0 ? sparse : dense, key: "k\(index)", buyer: "b\(index)", at: time)
                }
                placed += try await store.reserve(reservations).outcomes.compactMap(\.order)
            }
            #expect(placed.count == 5_100)
            // Every third of dense paid.
            let denseOrders = placed.filter { $0.saleID == dense.id }
            let paid = stride(from: 0, to: denseOrders.count, by: 3).map { denseOrders[$0].id }
            _ = try await store.transitions(paid.map { TransitionRequest(orderID: $0, event: .pay) }, at: millisecondNow())

            func listed(_ filter: OrderFilter, limit: Int) async throws -> [OrderID] {
                var ids: [OrderID] = []
                var after: OrderID?
                while true {
                    let page = try await store.orders(matching: filter, after: after, limit: limit)
                    #expect(page.count <= limit)
                    ids += page.map(\.id)
                    guard page.count == limit, let last = page.last else { return ids }
                    after = last.id
                }
            }
            let expectedDense = denseOrders.map(\.id).sorted { $0.description < $1.description }
            #expect(try await listed(OrderFilter(saleID: dense.id), limit: 200) == expectedDense)
            let expectedSparse = placed.filter { $0.saleID == sparse.id }.map(\.id).sorted { $0.description < $1.description }
            #expect(expectedSparse.count == 102)
            #expect(try await listed(OrderFilter(saleID: sparse.id), limit: 200) == expectedSparse)
            #expect(try await listed(OrderFilter(saleID: sparse.id), limit: 7) == expectedSparse)
            let paidSorted = paid.sorted { $0.description < $1.description }
            #expect(try await listed(OrderFilter(saleID: dense.id, status: .paid), limit: 200) == paidSorted)
            #expect(try await listed(OrderFilter(saleID: sparse.id, status: .paid), limit: 200).isEmpty)
            let firstPending = try await store.orders(
                matching: OrderFilter(saleID: dense.id, status: .pendingPayment), after: nil, limit: 1)
            #expect(firstPending.map(\.id) == [expectedDense.first { !paid.contains($0) }])
        }
    }

    @Test("an order is flagged with a reason and a time; flagging an unknown order is refused", arguments: StoreKind.allCases)
    func flagged(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (_, orders) = try await Self.pendingOrders(1, on: store)
            let now = millisecondNow()
            try await store.flagOrder(orders[0].id, OrderFlag(reason: .confirmFailed, flaggedAt: now))
            #expect(try await store.order(orders[0].id)?.flag == OrderFlag(reason: .confirmFailed, flaggedAt: now))
            await #expect(throws: OrderError.orderNotFound) {
                try await store.flagOrder(.make(), OrderFlag(reason: .confirmFailed, flaggedAt: now))
            }
        }
    }
}
