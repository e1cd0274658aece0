import CrestCore
import CrestEngine
import CrestTestSupport
import Foundation
import Testing

/// `Engine.placeWithoutWaiting`: the orders memory can decide, placed by a caller that must not
/// suspend (the HTTP channel), with the same outcome as `placeOrder`; anything else left untouched.
@Suite("Placing without waiting")
struct PlacementWithoutWaitingTests {
    /// How the engine took `request` and, when it was submitted, its answer.
    static func place(_ engine: Engine, _ request: OrderRequest) async -> (
        taken: Engine.PlacementWithoutWaiting, answer: Result<PlacedOrder, any Error>?
    ) {
        let (answers, answered) = AsyncStream.makeStream(of: Result<PlacedOrder, any Error>.self)
        let taken = engine.placeWithoutWaiting(request) { answer in
            answered.yield(answer)
            answered.finish()
        }
        guard case .submitted = taken else { return (taken, nil) }
        var next = answers.makeAsyncIterator()
        return (taken, await next.next())
    }

    static func request(_ sale: Sale, key: String, buyer: String) -> OrderRequest {
        OrderRequest(saleID: sale.id, idempotencyKey: key, buyer: buyer, quantity: 1)
    }

    @Test(
        "an attempt memory can decide is answered once durable and readable at once; a known key, an unloaded gate or bad input are left to placeOrder; sold out is refused from memory"
    )
    func placesWhatMemoryDecides() async throws {
        var configuration = EngineConfiguration()
        configuration.writePath = WritePathLimitConfiguration()
        try await EngineFixture.with(configuration: configuration) { fixture in
            let engine = fixture.engine
            let sale = try await fixture.sale(stock: 2)
            // The gate is loaded by the first attempt that waits: memory knows nothing of the sale yet.
            #expect(await Self.place(engine, Self.request(sale, key: "z1", buyer: "zoe")).taken == .elsewhere)
            _ = try await engine.placeOrder(Self.request(sale, key: "z1", buyer: "zoe"))

            let (taken, answer) = await Self.place(engine, Self.request(sale, key: "a1", buyer: "ana"))
            #expect(taken == .submitted)
            let placed = try #require(try answer?.get())
            #expect(!placed.replayed && placed.order.buyer == "ana" && placed.order.status == .pendingPayment)
            #expect(try await engine.order(placed.order.id) == placed.order, "durable and readable once answered")

            // A key the gate knows needs the store's word: left whole to placeOrder, which replays it.
            #expect(await Self.place(engine, Self.request(sale, key: "a1", buyer: "ana")).taken == .elsewhere)
            let replayed = try await engine.placeOrder(Self.request(sale, key: "a1", buyer: "ana"))
            #expect(replayed.replayed && replayed.order.id == placed.order.id)
            // Bad input is placeOrder's to refuse with its message.
            #expect(await Self.place(engine, Self.request(sale, key: "", buyer: "bob")).taken == .elsewhere)
            // Both units taken: sold out, from memory; the refusal is remembered for the key.
            #expect(await Self.place(engine, Self.request(sale, key: "b1", buyer: "bob")).taken == .refused(.soldOut))
            await #expect(throws: OrderError.soldOut) { try await engine.placeOrder(Self.request(sale, key: "b1", buyer: "bob")) }

            #expect(engine.writePath?.snapshot.inFlight == 0, "every place taken was given back")
            let counters = try await fixture.conservedCounters(sale)
            #expect(counters.reserved == 2 && counters.available == 0)
        }
    }

    @Test("with no place free on the write path nothing is taken, not even the gate's stock: the attempt waits in placeOrder")
    func noFreePlace() async throws {
        var configuration = EngineConfiguration()
        var limit = WritePathLimitConfiguration()
        (limit.initial, limit.minimum) = (1, 1)
        configuration.writePath = limit
        try await EngineFixture.with(configuration: configuration) { fixture in
            let engine = fixture.engine
            let writePath = try #require(engine.writePath)
            let sale = try await fixture.sale(stock: 5)
            _ = try await engine.placeOrder(Self.request(sale, key: "z1", buyer: "zoe"))  // loads the gate
            #expect(writePath.tryAcquire(), "the one place")
            #expect(await Self.place(engine, Self.request(sale, key: "a1", buyer: "ana")).taken == .elsewhere)
            #expect(try await fixture.conservedCounters(sale).available == 4)
            writePath.release()
            #expect(await Self.place(engine, Self.request(sale, key: "a1", buyer: "ana")).taken == .submitted)
            #expect(writePath.snapshot.inFlight == 0)
        }
    }
}
