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
    @Test("a sold-out gate on one node opens when another node gives the stock back")
    func soldOutGateReopensAcrossNodes() async throws {
        guard let cluster = try await PostgresCluster.shared() else { return }
        let url = try cluster.createDatabase()
        var logger = Logger(label: "crest.test.nodes")
        logger.logLevel = .warning
        let stores = [
            try await PostgresStore.connect(url: url, logger: logger),
            try await PostgresStore.connect(url: url, logger: logger),
        ]
        let (a, b) = (Engine(store: stores[0], logger: logger), Engine(store: stores[1], logger: logger))
        let group = ServiceGroup(
            services: [a.batcherService, a.jobRunnerService, b.batcherService, b.jobRunnerService], logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
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
            await group.triggerGracefulShutdown()
            try await tasks.next()
        }
        for store in stores { try await store.close() }
    }
}
