import CrestCore
import CrestStore
import CrestTestSupport
import Foundation
import Testing

@Suite("Store conformance: the event feed")
struct EventFeedConformanceTests {
    /// Reads the feed from `after` in pages of `pageSize` until it is empty.
    static func drain(_ store: any Store, after: Int64 = 0, pageSize: Int) async throws -> [FeedEvent] {
        var read: [FeedEvent] = []
        var cursor = after
        while true {
            let page = try await store.eventFeed(after: cursor, limit: pageSize)
            #expect(page.events.count <= pageSize)
            guard let last = page.events.last else { return read }
            #expect(page.head >= last.position)
            read += page.events
            cursor = last.position
        }
    }

    /// Every event of `orders`, as their own histories tell.
    static func histories(_ orders: [OrderID], in store: any Store) async throws -> Set<OrderEvent> {
        var all: Set<OrderEvent> = []
        for id in orders { all.formUnion(try await store.events(of: id)) }
        return all
    }

    /// The feed's promises over what a consumer read: positions 1… without gap or repeat from
    /// `first`, every event once, each order's events in their sequence.
    static func expectWellFormed(_ read: [FeedEvent], from first: Int64 = 1) {
        #expect(read.map(\.position) == Array(first..<(first + Int64(read.count))))
        #expect(Set(read.map(\.event.id)).count == read.count, "an event read twice")
        var lastSequence: [OrderID: Int] = [:]
        for item in read {
            let previous = lastSequence[item.event.orderID, default: 0]
            #expect(item.event.sequence == previous + 1, "order \(item.event.orderID): \(item.event.sequence) after \(previous)")
            lastSequence[item.event.orderID] = item.event.sequence
        }
    }

    @Test("every event once, each order's in sequence, read in pages and resumed from a cursor", arguments: StoreKind.allCases)
    func pagesAndResume(kind: StoreKind) async throws {
        try await kind.with { open in
            let store = try await open()
            #expect(try await store.eventFeed(after: 0, limit: 10) == EventFeedPage(events: [], head: 0))
            let (_, orders) = try await TransitionConformanceTests.pendingOrders(5, on: store)
            let now = millisecondNow()
            _ = try await store.transitions(
                [
                    TransitionRequest(orderID: orders[0].id, event: .pay),
                    TransitionRequest(orderID: orders[1].id, event: .cancel),
                    TransitionRequest(orderID: orders[2].id, event: .expire),
                ], at: now)
            _ = try await store.transition(orders[2].id, by: .refund, at: now)

            let read = try await Self.drain(store, pageSize: 2)
            Self.expectWellFormed(read)
            #expect(Set(read.map(\.event)) == (try await Self.histories(orders.map(\.id), in: store)))
            #expect(read.count == 9)
            #expect(try await store.eventFeed(after: 9, limit: 5) == EventFeedPage(events: [], head: 9))

            // A consumer that kept position 4 resumes there, on a store opened again (a restart).
            let reopened = try await open()
            let resumed = try await Self.drain(reopened, after: 4, pageSize: 3)
            #expect(resumed == Array(read.dropFirst(4)))

            // New events follow the old ones.
            _ = try await reopened.transition(orders[3].id, by: .cancel, at: millisecondNow())
            let more = try await Self.drain(reopened, after: 9, pageSize: 3)
            #expect(more.map(\.position) == [10])
            #expect(more.first?.event.orderID == orders[3].id && more.first?.event.kind == .cancelled)
        }
    }

    @Test("two nodes writing at once while a consumer reads: it gets every event once, in order", arguments: StoreKind.allCases)
    func concurrentWriters(kind: StoreKind) async throws {
        try await kind.with { open in
            let (first, second, consumerStore) = (try await open(), try await open(), try await open())
            let sale = makeSale(stock: 400, perBuyerLimit: 1)
            try await first.createSale(sale)
            let writing = Locked(true)
            let consumer = Task {
                var read: [FeedEvent] = []
                var cursor: Int64 = 0
                while true {
                    let stillWriting = writing.value
                    let page = try await consumerStore.eventFeed(after: cursor, limit: 7)
                    read += page.events
                    cursor = page.events.last?.position ?? cursor
                    if page.events.isEmpty {
                        if !stillWriting { return read }
                        try await Task.sleep(for: .milliseconds(2))
                    }
                }
            }
            async let byFirst = Self.placeAndSettle(on: first, sale: sale, buyers: 0..<100)
            async let bySecond = Self.placeAndSettle(on: second, sale: sale, buyers: 100..<200)
            let placed = try await byFirst + bySecond
            writing.withLock { $0 = false }
            let read = try await consumer.value
            Self.expectWellFormed(read)
            let all = try await Self.histories(placed, in: first)
            #expect(all.count == 400)
            #expect(Set(read.map(\.event)) == all)
        }
    }

    /// Places one order per buyer in batches of 10, and settles each batch (paid or cancelled),
    /// so events of creations and of transitions interleave with the other node's.
    static func placeAndSettle(on store: any Store, sale: Sale, buyers: Range<Int>) async throws -> [OrderID] {
        var placed: [OrderID] = []
        for start in stride(from: buyers.lowerBound, to: buyers.upperBound, by: 10) {
            let batch = (start..<min(start + 10, buyers.upperBound)).map {
                reservation(sale, key: "k\($0)", buyer: "b\($0)")
            }
            let orders = try await store.reserve(batch).outcomes.compactMap(\.order)
            _ = try await store.transitions(
                orders.enumerated().map { TransitionRequest(orderID: $1.id, event: $0 % 2 == 0 ? .pay : .cancel) },
                at: millisecondNow())
            placed += orders.map(\.id)
        }
        return placed
    }
}
