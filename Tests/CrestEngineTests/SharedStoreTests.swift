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
    @Test(
        "a sold-out gate on one node opens when another node gives the stock back; a key placed on one node replays on the other even when sold out"
    )
    func soldOutGateReopensAcrossNodes() async throws {
        try await withTwoNodes { a, b in
            let sale = try await makeSale(on: a, title: "The last one", stock: 1)
            let placed = try await a.placeOrder(OrderRequest(saleID: sale.id, idempotencyKey: "a", buyer: "ana", quantity: 1))
            // Node b loads its gate: sold out, answered from memory from now on.
            await #expect(throws: OrderError.soldOut) {
                try await b.placeOrder(OrderRequest(saleID: sale.id, idempotencyKey: "b0", buyer: "bob", quantity: 1))
            }
            _ = try await a.cancelOrder(placed.order.id)
            let attempts = Locked(0)
            let reopened = try await eventually(timeout: .seconds(60)) {
                let attempt = attempts.withLock { count in
                    count += 1
                    return count
                }
                let key = "b\(attempt)"
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
        }
    }

    @Test("a buyer whose order another node cancelled may buy again on this node, though its gate counted the order")
    func holdingsEndedOnAnotherNode() async throws {
        try await withTwoNodes { a, b in
            let sale = try await makeSale(on: a, title: "One each", stock: 10)
            let first = try await a.placeOrder(OrderRequest(saleID: sale.id, idempotencyKey: "1", buyer: "ana", quantity: 1))
            // Node b loads its gate with ana holding one: her next attempt is over the limit.
            await #expect(throws: OrderError.buyerLimitReached(limit: 1)) {
                try await b.placeOrder(OrderRequest(saleID: sale.id, idempotencyKey: "2", buyer: "ana", quantity: 1))
            }
            _ = try await a.cancelOrder(first.order.id)
            // Node b hears only that a unit came back. Ana's attempt through it is hers to have —
            // the one it refused while she held the first too: a refusal is decided again once the
            // store says the buyer's units are fewer than the gate counted.
            let again = try await b.placeOrder(OrderRequest(saleID: sale.id, idempotencyKey: "2", buyer: "ana", quantity: 1))
            #expect(!again.replayed && again.order.buyer == "ana")
            // Now she holds one again: over the limit on both nodes, and the store agrees.
            await #expect(throws: OrderError.buyerLimitReached(limit: 1)) {
                try await b.placeOrder(OrderRequest(saleID: sale.id, idempotencyKey: "3", buyer: "ana", quantity: 1))
            }
            await #expect(throws: OrderError.buyerLimitReached(limit: 1)) {
                try await a.placeOrder(OrderRequest(saleID: sale.id, idempotencyKey: "4", buyer: "ana", quantity: 1))
            }
            #expect(try await b.placeOrder(OrderRequest(saleID: sale.id, idempotencyKey: "2", buyer: "ana", quantity: 1)).replayed)
            let live = try await a.orders(
                matching: OrderFilter(saleID: sale.id, status: .pendingPayment), after: nil, limit: 10)
            #expect(live.map(\.id) == [again.order.id])
            #expect(try await a.sale(sale.id).stock == StockCounters(total: 10, available: 9, reserved: 1, sold: 0))
        }
    }

    @Test("a crowd split over two nodes: exactly the stock, no buyer twice, and every order replays through the other node")
    func crowdOverTwoNodes() async throws {
        try await withTwoNodes { a, b in
            let nodes = [a, b]
            let sale = try await makeSale(on: a, title: "Two doors", stock: 2_000)
            let attempts = 20_000
            let buyers = 12_000
            let request: @Sendable (Int) -> OrderRequest = { attempt in
                OrderRequest(saleID: sale.id, idempotencyKey: "key-\(attempt)", buyer: "buyer-\(attempt % buyers)", quantity: 1)
            }
            let results = await concurrently(attempts, width: 200) { attempt in
                await AttemptResult.of { try await nodes[attempt % 2].placeOrder(request(attempt)) }
            }
            var orderBuyers: [OrderID: String] = [:]
            for (attempt, result) in results.enumerated() {
                switch result {
                case .order(let id): orderBuyers[id] = request(attempt).buyer
                case .refused(.soldOut), .refused(.buyerLimitReached): break
                default: Issue.record("attempt \(attempt) ended \(result)")
                }
            }
            #expect(orderBuyers.count == 2_000)
            #expect(Set(orderBuyers.values).count == 2_000, "a buyer holds two orders")
            #expect(try await a.sale(sale.id).stock == StockCounters(total: 2_000, available: 0, reserved: 2_000, sold: 0))

            // Every attempt again, through the node that did not answer it: an order comes back as
            // itself; a refusal stays a refusal (which one may differ — refusals are a node's memory,
            // not the store's), and nothing new is placed.
            let replays = await concurrently(attempts, width: 200) { attempt in
                await AttemptResult.of { try await nodes[(attempt + 1) % 2].placeOrder(request(attempt)) }
            }
            var mismatches: [String] = []
            for (attempt, (first, again)) in zip(results, replays).enumerated() {
                switch (first, again) {
                case (.order(let id), .order(let replayed)) where id == replayed: break
                case (.refused, .refused(.soldOut)), (.refused, .refused(.buyerLimitReached)): break
                default: mismatches.append("attempt \(attempt): \(first), then \(again)")
                }
            }
            #expect(mismatches.isEmpty, "\(mismatches.prefix(5))")
            #expect(try await b.sale(sale.id).stock.reserved == 2_000)
        }
    }

    private func makeSale(on node: Engine, title: String, stock: Int64) async throws -> Sale {
        try await node.createSale(
            SaleDraft(sku: "SHARED", title: title, price: Money(amount: 100, currency: Currency("CNY")!), stock: stock))
    }

    /// Runs `body` with two engines on one fresh database, each with its batcher and job runner
    /// running; both stop whatever happens, or a failing expectation would leave them running.
    @Test(
        "on a shared store the channel's placement takes what the gate admits (the store decides it again: a key another node placed replays its order) and leaves a refusal to placeOrder, which asks the store"
    )
    func callbackPlacement() async throws {
        try await withTwoNodes { a, b in
            let sale = try await makeSale(on: a, title: "Three", stock: 3)
            // Node b's gate is loaded by its first attempt.
            _ = try await b.placeOrder(OrderRequest(saleID: sale.id, idempotencyKey: "b1", buyer: "bob", quantity: 1))
            let (taken, answers) = CallbackPlacementTests.place(b, CallbackPlacementTests.request(sale, key: "b2", buyer: "cy"))
            #expect(taken == .answering)
            let cy = try await CallbackPlacementTests.answer(of: answers).get()
            #expect(!cy.replayed && cy.order.buyer == "cy")
            #expect(try await a.order(cy.order.id) == cy.order, "durable, and read from the other node")

            // Node a sells the last unit; node b's gate has not heard. Its admission of the same
            // key is decided again by the store, which names node a's order.
            let dan = try await a.placeOrder(OrderRequest(saleID: sale.id, idempotencyKey: "a1", buyer: "dan", quantity: 1))
            let (again, replays) = CallbackPlacementTests.place(b, CallbackPlacementTests.request(sale, key: "a1", buyer: "dan"))
            #expect(again == .answering)
            let replay = try await CallbackPlacementTests.answer(of: replays).get()
            #expect(replay.replayed && replay.order.id == dan.order.id)

            // Sold out now in node b's gate too: its refusal is not the channel's to give.
            let (refused, _) = CallbackPlacementTests.place(b, CallbackPlacementTests.request(sale, key: "b3", buyer: "eve"))
            #expect(refused == .elsewhere)
            await #expect(throws: OrderError.soldOut) {
                try await b.placeOrder(OrderRequest(saleID: sale.id, idempotencyKey: "b3", buyer: "eve", quantity: 1))
            }
            #expect(try await a.sale(sale.id).stock == StockCounters(total: 3, available: 0, reserved: 3, sold: 0))
        }
    }

    private func withTwoNodes(_ body: (Engine, Engine) async throws -> Void) async throws {
        guard let cluster = try await PostgresCluster.shared() else { return }
        let url = try await cluster.createDatabase()
        var logger = Logger(label: "crest.test.nodes")
        logger.logLevel = .warning
        let stores = [
            try await PostgresStore.connect(url: url, logger: logger, leaseTimeout: .seconds(30), answerTimeout: .seconds(600)),
            try await PostgresStore.connect(url: url, logger: logger, leaseTimeout: .seconds(30), answerTimeout: .seconds(600)),
        ]
        let (a, b) = (Engine(store: stores[0], logger: logger), Engine(store: stores[1], logger: logger))
        let group = ServiceGroup(
            services: [a.batcherService, a.jobRunnerService, b.batcherService, b.jobRunnerService], logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var failure: (any Error)?
            do { try await body(a, b) } catch { failure = error }
            await group.triggerGracefulShutdown()
            try await tasks.next()
            if let failure { throw failure }
        }
        for store in stores { try await store.close() }
    }
}
