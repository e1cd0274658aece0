import CrestCore
import CrestEngine
import CrestStore
import CrestTestSupport
import Foundation
import Logging
import ServiceLifecycle
import Testing

/// Two engines — two nodes — on one PostgreSQL database.
@Suite("Engines sharing a PostgreSQL store")
struct SharedStoreTests {
    @Test("a sold-out gate on one node opens when another node gives the stock back; a key placed on one node replays on the other even when sold out")
    func soldOutGateReopensAcrossNodes() async throws {
        guard let cluster = try await PostgresCluster.shared() else { return }
        let url = try await cluster.createDatabase()
        var logger = Logger(label: "crest.test.nodes")
        logger.logLevel = .warning
        let stores = [
            try await PostgresStore.connect(url: url, logger: logger, leaseTimeout: .seconds(30)),
            try await PostgresStore.connect(url: url, logger: logger, leaseTimeout: .seconds(30)),
        ]
        let (a, b) = (Engine(store: stores[0], logger: logger), Engine(store: stores[1], logger: logger))
        let group = ServiceGroup(
            services: [a.batcherService, a.jobRunnerService, b.batcherService, b.jobRunnerService], logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            // The nodes stop whatever happens, or a failing expectation would leave the group running.
            var failure: (any Error)?
            do {
                let sale = try await a.createSale(
                    SaleDraft(sku: "ONE", title: "The last one", price: Money(amount: 100, currency: Currency("CNY")!), stock: 1))
                let placed = try await a.placeOrder(OrderRequest(saleID: sale.id, idempotencyKey: "a", buyer: "ana", quantity: 1))
                // Node b loads its gate: sold out, answered from memory from now on.
                await #expect(throws: OrderError.soldOut) {
                    try await b.placeOrder(OrderRequest(saleID: sale.id, idempotencyKey: "b0", buyer: "bob", quantity: 1))
                }
                _ = try await a.cancelOrder(placed.order.id)
                let attempts = Locked(0)
                let reopened = try await eventually(timeout: .seconds(10)) {
                    let key = "b\(attempts.withLock { $0 += 1; return $0 })"
                    return (try? await b.placeOrder(OrderRequest(saleID: sale.id, idempotencyKey: key, buyer: "bob", quantity: 1))) != nil
                }
                #expect(reopened, "node b still answers sold out after node a gave the unit back")

                // Sold out again (bob holds the unit). Node a never saw bob's key, and its gate says
                // "sold out" and "bob already holds one": bob's repeat through node a still gets his order.
                let bobs = try await b.orders(matching: OrderFilter(saleID: sale.id, status: .pendingPayment), after: nil, limit: 10)
                let bob = try #require(bobs.first)
                await #expect(throws: OrderError.soldOut) {
                    try await a.placeOrder(OrderRequest(saleID: sale.id, idempotencyKey: "a1", buyer: "cy", quantity: 1))
                }
                let repeated = try await a.placeOrder(
                    OrderRequest(saleID: sale.id, idempotencyKey: "b\(attempts.value)", buyer: "bob", quantity: 1))
                #expect(repeated.replayed && repeated.order.id == bob.id)
            } catch {
                failure = error
            }
            await group.triggerGracefulShutdown()
            try await tasks.next()
            if let failure { throw failure }
        }
        for store in stores { try await store.close() }
    }
}
