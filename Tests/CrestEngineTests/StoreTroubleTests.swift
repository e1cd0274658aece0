import CrestCore
import CrestEngine
import CrestTestSupport
import Foundation
import Testing

@Suite("In-flight keys and store failures")
struct StoreTroubleTests {
    @Test("while a key's first request is in flight, the same key gets 'in progress', another body 'reused'")
    func sameKeyInFlight() async throws {
        try await EngineFixture.withControllableStore { fixture, controllable in
            let sale = try await fixture.sale(stock: 5, perBuyerLimit: 2)
            controllable.hold()
            async let first = fixture.order(sale, buyer: "ana", key: "k1")
            while controllable.batchSizes.value.isEmpty { try await Task.sleep(for: .milliseconds(1)) }
            await #expect(throws: OrderError.requestInProgress) { try await fixture.order(sale, buyer: "ana", key: "k1") }
            await #expect(throws: OrderError.idempotencyKeyReused) {
                try await fixture.order(sale, buyer: "ana", key: "k1", quantity: 2)
            }
            controllable.release()
            let placed = try await first
            #expect(try await fixture.order(sale, buyer: "ana", key: "k1").order.id == placed.order.id)
        }
    }

    @Test("a failed commit answers 'unavailable', holds no stock, and the retry with the same key succeeds once")
    func failedCommitIsRetryable() async throws {
        try await EngineFixture.withControllableStore { fixture, controllable in
            let sale = try await fixture.sale(stock: 1)
            // Load the gate (this refusal comes from memory), then break the store.
            await #expect(throws: OrderError.quantityAboveLimit(limit: 1)) {
                _ = try await fixture.order(sale, buyer: "warm", key: "warm", quantity: 2)
            }
            controllable.setFailing(true)
            await #expect(throws: UnavailableError.self) { try await fixture.order(sale, buyer: "ana", key: "k1") }
            #expect(await fixture.engine.isReady() == false)
            controllable.setFailing(false)
            #expect(await fixture.engine.isReady())
            let placed = try await fixture.order(sale, buyer: "ana", key: "k1")
            #expect(placed.replayed == false)
            #expect(try await fixture.order(sale, buyer: "ana", key: "k1").order.id == placed.order.id)
            await #expect(throws: OrderError.soldOut) { try await fixture.order(sale, buyer: "bob", key: "k2") }
            #expect(
                try await fixture.engine.sale(sale.id).stock
                    == StockCounters(total: 1, available: 0, reserved: 1, sold: 0))
        }
    }
}
