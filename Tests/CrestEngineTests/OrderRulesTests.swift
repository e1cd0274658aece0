import CrestCore
import CrestTestSupport
import Foundation
import Synchronization
import Testing

@testable import CrestEngine

@Suite("Order rules")
struct OrderRulesTests {
    @Test("a replayed key returns the same order, marked replayed")
    func replayReturnsSameOrder() async throws {
        try await EngineFixture.with { fixture in
            let sale = try await fixture.sale(stock: 5)
            let first = try await fixture.order(sale, buyer: "ana", key: "k1")
            let again = try await fixture.order(sale, buyer: "ana", key: "k1")
            #expect(first.replayed == false)
            #expect(again.replayed == true)
            #expect(again.order.id == first.order.id)
            #expect(try await fixture.engine.sale(sale.id).stock.reserved == 1)
        }
    }

    @Test("the same key with another body is refused as reused")
    func keyWithOtherBodyIsRefused() async throws {
        try await EngineFixture.with { fixture in
            let sale = try await fixture.sale(stock: 5, perBuyerLimit: 2)
            _ = try await fixture.order(sale, buyer: "ana", key: "k1")
            await #expect(throws: OrderError.idempotencyKeyReused) {
                try await fixture.order(sale, buyer: "ana", key: "k1", quantity: 2)
            }
            await #expect(throws: OrderError.idempotencyKeyReused) {
                try await fixture.order(sale, buyer: "bob", key: "k1")
            }
        }
    }

    @Test("a refused key replays its refusal, with the sale's limit; the same key with another body is refused as reused")
    func refusedKeyReplaysItsRefusal() async throws {
        try await EngineFixture.with { fixture in
            let sale = try await fixture.sale(stock: 2, perBuyerLimit: 1)
            _ = try await fixture.order(sale, buyer: "ana", key: "k1")
            await #expect(throws: OrderError.buyerLimitReached(limit: 1)) { try await fixture.order(sale, buyer: "ana", key: "k2") }
            _ = try await fixture.order(sale, buyer: "bob", key: "k3")
            await #expect(throws: OrderError.soldOut) { try await fixture.order(sale, buyer: "cy", key: "k4") }
            // Remembered: the same answers again, and a reuse of either key with another body.
            await #expect(throws: OrderError.buyerLimitReached(limit: 1)) { try await fixture.order(sale, buyer: "ana", key: "k2") }
            await #expect(throws: OrderError.soldOut) { try await fixture.order(sale, buyer: "cy", key: "k4") }
            await #expect(throws: OrderError.idempotencyKeyReused) { try await fixture.order(sale, buyer: "dee", key: "k2") }
            await #expect(throws: OrderError.idempotencyKeyReused) { try await fixture.order(sale, buyer: "cy", key: "k4", quantity: 2) }
        }
    }

    @Test("a sale's gate unused past the idle timeout is dropped, and loaded again with its keys, holdings and counters")
    func idleGateIsDroppedAndReloaded() async throws {
        // Ten minutes' idle timeout, passed by moving the engine's clock (the orders' day-long
        // payment window keeps them pending meanwhile).
        let clock = AdjustableClock()
        try await EngineFixture.with(configuration: EngineConfiguration(gateIdleTimeout: .seconds(600)), clock: clock) {
            fixture in
            let sale = try await fixture.sale(stock: 2, perBuyerLimit: 1, paymentWindowSeconds: 86_400)
            let ana = try await fixture.order(sale, buyer: "ana", key: "k1")
            _ = try await fixture.order(sale, buyer: "bob", key: "k2")
            await #expect(throws: OrderError.soldOut) { try await fixture.order(sale, buyer: "cy", key: "k3") }
            #expect(fixture.engine.gates.loadedGate(for: sale.id) != nil)
            clock.advance(by: .seconds(300))
            try await Task.sleep(for: .milliseconds(50))
            #expect(fixture.engine.gates.loadedGate(for: sale.id) != nil, "half the timeout: still loaded")
            clock.advance(by: .seconds(600))
            let dropped = try await eventually(timeout: .seconds(60)) {
                fixture.engine.gates.loadedGate(for: sale.id) == nil
            }
            #expect(dropped, "the gate is still loaded")
            // Loaded again from the store: the key replays, the buyer is at the limit, the sale sold out.
            let again = try await fixture.order(sale, buyer: "ana", key: "k1")
            #expect(again.replayed && again.order.id == ana.order.id)
            await #expect(throws: OrderError.buyerLimitReached(limit: 1)) { try await fixture.order(sale, buyer: "ana", key: "k4") }
            await #expect(throws: OrderError.soldOut) { try await fixture.order(sale, buyer: "dee", key: "k5") }
            #expect(try await fixture.conservedCounters(sale) == StockCounters(total: 2, available: 0, reserved: 2, sold: 0))
        }
    }

    @Test("keys, holdings and counters survive a restart of the engine on the same store")
    func stateSurvivesRestart() async throws {
        let directory = EngineFixture.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (sale, placed) = try await EngineFixture.with(directory: directory) { fixture in
            let sale = try await fixture.sale(stock: 2)
            return (sale, try await fixture.order(sale, buyer: "ana", key: "k1"))
        }
        try await EngineFixture.with(directory: directory) { fixture in
            let again = try await fixture.order(sale, buyer: "ana", key: "k1")
            #expect(again.replayed && again.order.id == placed.order.id)
            await #expect(throws: OrderError.buyerLimitReached(limit: 1)) {
                try await fixture.order(sale, buyer: "ana", key: "k2")
            }
            _ = try await fixture.order(sale, buyer: "bob", key: "k3")
            await #expect(throws: OrderError.soldOut) { try await fixture.order(sale, buyer: "cy", key: "k4") }
            #expect(
                try await fixture.engine.sale(sale.id).stock
                    == StockCounters(total: 2, available: 0, reserved: 2, sold: 0))
        }
    }

    @Test("the per-buyer limit counts every live order of the buyer, even under concurrency")
    func perBuyerLimitHoldsUnderConcurrency() async throws {
        try await EngineFixture.with { fixture in
            let sale = try await fixture.sale(stock: 1_000, perBuyerLimit: 3)
            let accepted = await withTaskGroup(of: Int.self) { group in
                for attempt in 0..<50 {
                    group.addTask {
                        (try? await fixture.order(sale, buyer: "ana", key: "k\(attempt)", quantity: 1 + attempt % 2))?
                            .order.quantity ?? 0
                    }
                }
                return await group.reduce(0, +)
            }
            #expect(accepted <= 3)
            #expect(accepted >= 2)
            #expect(try await fixture.engine.sale(sale.id).stock.reserved == Int64(accepted))
            await #expect(throws: OrderError.quantityAboveLimit(limit: 3)) {
                try await fixture.order(sale, buyer: "bob", key: "big", quantity: 4)
            }
        }
    }

    @Test("a cancelled order's stock can be bought by another buyer")
    func cancelledStockCanBeBoughtAgain() async throws {
        try await EngineFixture.with { fixture in
            let sale = try await fixture.sale(stock: 1)
            let ana = try await fixture.order(sale, buyer: "ana", key: "a")
            await #expect(throws: OrderError.soldOut) { try await fixture.order(sale, buyer: "bob", key: "b1") }
            let cancelled = try await fixture.engine.cancelOrder(ana.order.id)
            #expect(cancelled.status == .cancelled)
            #expect(try await fixture.engine.sale(sale.id).stock == StockCounters(total: 1))
            let bob = try await fixture.order(sale, buyer: "bob", key: "b2")
            #expect(bob.order.status == .pendingPayment)
            // Cancelling again is harmless; the stock is not released twice.
            _ = try await fixture.engine.cancelOrder(ana.order.id)
            #expect(
                try await fixture.engine.sale(sale.id).stock
                    == StockCounters(total: 1, available: 0, reserved: 1, sold: 0))
            // A buyer whose order was cancelled may order again.
            _ = try await fixture.engine.cancelOrder(bob.order.id)
            _ = try await fixture.order(sale, buyer: "ana", key: "a2")
        }
    }

    @Test("a sale takes orders only between its start and its end")
    func saleWindowIsEnforced() async throws {
        let clock = AdjustableClock()
        let now = clock.now()
        try await EngineFixture.with(clock: clock) { fixture in
            let startsAt = now.addingTimeInterval(60)
            let sale = try await fixture.sale(
                stock: 10, startsAt: startsAt, endsAt: now.addingTimeInterval(120))
            #expect(sale.startsAt == startsAt.wholeMilliseconds)
            await #expect(throws: OrderError.saleNotOpen(startsAt: sale.startsAt)) {
                try await fixture.order(sale, buyer: "ana", key: "early")
            }
            clock.advance(by: .seconds(61))
            // The same key, retried once the sale opened, is decided again.
            _ = try await fixture.order(sale, buyer: "ana", key: "early")
            clock.advance(by: .seconds(60))
            await #expect(throws: OrderError.saleClosed) { try await fixture.order(sale, buyer: "bob", key: "late") }
        }
    }

    @Test("unknown sales and orders are reported as not found")
    func unknownIdsAreNotFound() async throws {
        try await EngineFixture.with { fixture in
            await #expect(throws: OrderError.saleNotFound) {
                try await fixture.engine.placeOrder(
                    OrderRequest(saleID: SaleID.make(), idempotencyKey: "k", buyer: "ana", quantity: 1))
            }
            await #expect(throws: OrderError.orderNotFound) { try await fixture.engine.order(OrderID.make()) }
            await #expect(throws: OrderError.orderNotFound) { try await fixture.engine.cancelOrder(OrderID.make()) }
        }
    }
}
