import CrestCore
import CrestStore
import CrestTestSupport
import Foundation
import Logging
import Testing

/// What only the shared store has: several nodes starting at once, and announcements between them.
@Suite("PostgreSQL store: several nodes")
struct PostgresStoreTests {
    @Test("four nodes starting at once on an empty database: one migrates, all open")
    func concurrentMigrations() async throws {
        _ = try await StoreKind.postgres.with { open in
            let stores = try await withThrowingTaskGroup(of: (any Store).self) { group in
                for _ in 0..<4 { group.addTask { try await open() } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(stores.count == 4)
            let sale = makeSale(stock: 1)
            try await stores[0].createSale(sale)
            #expect(try await stores[3].sale(sale.id) == sale)
        }
    }

    @Test("a node hears what another did: jobs enqueued, stock given back")
    func announcements() async throws {
        _ = try await StoreKind.postgres.with { open in
            let (a, b) = (try await open(), try await open())
            var heard = b.changes().makeAsyncIterator()
            let sale = makeSale(stock: 2)
            try await a.createSale(sale)
            let now = millisecondNow()
            let order = try #require(try await a.reserve([reservation(sale, key: "k", buyer: "ana", at: now)]).outcomes[0].order)
            // The reservation's expiry job is due at the end of the payment window.
            #expect(await heard.next() == .jobsDue(at: now.addingTimeInterval(900)))
            _ = try await a.transition(order.id, by: .cancel, at: now)
            #expect(await heard.next() == .stockReleased(sale.id))
            _ = try await a.enqueue([NewJob(kind: "test.now", payload: "x")], at: now)
            #expect(await heard.next() == .jobsDue(at: now))
            // A rolled-back change announces nothing: the next thing heard is the next commit.
            await #expect(throws: OrderError.orderNotFound) { try await a.transition(.make(), by: .cancel, at: now) }
            _ = try await a.enqueue([NewJob(kind: "test.later", payload: "y", runAt: now.addingTimeInterval(5))], at: now)
            #expect(await heard.next() == .jobsDue(at: now.addingTimeInterval(5)))
        }
    }
}
