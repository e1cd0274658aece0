import CrestCore
import CrestEngine
import CrestTestSupport
import Foundation
import Testing

/// `Engine.placeOrder(_:answer:)`: orders placed for a caller that must not suspend (the HTTP
/// channel), with the same outcome as `placeOrder`; what memory cannot decide left untouched.
@Suite("Placing with a callback")
struct CallbackPlacementTests {
    /// How the engine took `request`, and a way to wait for its answer when one is owed.
    static func place(_ engine: Engine, _ request: OrderRequest) -> (
        taken: Engine.CallbackPlacement, answer: AsyncStream<Result<PlacedOrder, any Error>>
    ) {
        let (answers, answered) = AsyncStream.makeStream(of: Result<PlacedOrder, any Error>.self)
        let taken = engine.placeOrder(request) { answer in
            answered.yield(answer)
            answered.finish()
        }
        if taken != .answering { answered.finish() }
        return (taken, answers)
    }

    /// The answer owed to an attempt taken `.answering`.
    static func answer(of answers: AsyncStream<Result<PlacedOrder, any Error>>) async throws -> Result<PlacedOrder, any Error> {
        var next = answers.makeAsyncIterator()
        return try #require(await next.next(), "answered once")
    }

    static func request(_ sale: Sale, key: String, buyer: String) -> OrderRequest {
        OrderRequest(saleID: sale.id, idempotencyKey: key, buyer: buyer, quantity: 1)
    }

    /// A write path of exactly one place, whose queue holds `queue` waiters for `timeout`.
    static func onePlace(queue: Int = 128, timeout: Duration = .seconds(30)) -> EngineConfiguration {
        var configuration = EngineConfiguration()
        var limit = WritePathLimitConfiguration()
        (limit.initial, limit.minimum, limit.maximum) = (1, 1, 1)
        (limit.queueCapacity, limit.queueTimeout) = (queue, timeout)
        configuration.writePath = limit
        return configuration
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
            // The gate is loaded by the first attempt that may wait: memory knows nothing of the sale yet.
            #expect(Self.place(engine, Self.request(sale, key: "z1", buyer: "zoe")).taken == .elsewhere)
            _ = try await engine.placeOrder(Self.request(sale, key: "z1", buyer: "zoe"))

            let (taken, answers) = Self.place(engine, Self.request(sale, key: "a1", buyer: "ana"))
            #expect(taken == .answering)
            let placed = try await Self.answer(of: answers).get()
            #expect(!placed.replayed && placed.order.buyer == "ana" && placed.order.status == .pendingPayment)
            #expect(try await engine.order(placed.order.id) == placed.order, "durable and readable once answered")

            // A key the gate knows needs the store's word: left whole to placeOrder, which replays it.
            #expect(Self.place(engine, Self.request(sale, key: "a1", buyer: "ana")).taken == .elsewhere)
            let replayed = try await engine.placeOrder(Self.request(sale, key: "a1", buyer: "ana"))
            #expect(replayed.replayed && replayed.order.id == placed.order.id)
            // Bad input is placeOrder's to refuse with its message.
            #expect(Self.place(engine, Self.request(sale, key: "", buyer: "bob")).taken == .elsewhere)
            // Both units taken: sold out, from memory; the refusal is remembered for the key.
            #expect(Self.place(engine, Self.request(sale, key: "b1", buyer: "bob")).taken == .refused(.soldOut))
            await #expect(throws: OrderError.soldOut) { try await engine.placeOrder(Self.request(sale, key: "b1", buyer: "bob")) }

            #expect(engine.writePath?.snapshot.inFlight == 0, "every place taken was given back")
            let counters = try await fixture.conservedCounters(sale)
            #expect(counters.reserved == 2 && counters.available == 0)
        }
    }

    @Test(
        "with no place free the attempt waits in the write path's queue without suspending anyone: placed when a place comes back, answered 503 when its wait runs out or the queue is full"
    )
    func waitsForAPlace() async throws {
        try await EngineFixture.with(configuration: Self.onePlace(queue: 1)) { fixture in
            let engine = fixture.engine
            let writePath = try #require(engine.writePath)
            let sale = try await fixture.sale(stock: 5)
            _ = try await engine.placeOrder(Self.request(sale, key: "z1", buyer: "zoe"))  // loads the gate
            #expect(writePath.acquire(then: { _ in Issue.record("a free place is taken at once") }) == .taken)

            let (taken, answers) = Self.place(engine, Self.request(sale, key: "a1", buyer: "ana"))
            #expect(taken == .answering)
            #expect(writePath.snapshot.waiting == 1)
            #expect(try await fixture.conservedCounters(sale).available == 4, "the gate is asked once a place is taken")
            // The queue holds one: the next attempt is refused at once, its key free.
            #expect(Self.place(engine, Self.request(sale, key: "b1", buyer: "bob")).taken == .overloaded(WritePathFull(reason: .queueFull)))

            writePath.release()
            let placed = try await Self.answer(of: answers).get()
            #expect(placed.order.buyer == "ana")
            #expect(try await engine.order(placed.order.id).status == .pendingPayment)
            #expect(writePath.snapshot.inFlight == 0 && writePath.snapshot.waiting == 0)
            // bob's key was not consumed by the refusal.
            #expect(try await engine.placeOrder(Self.request(sale, key: "b1", buyer: "bob")).order.buyer == "bob")
        }
        try await EngineFixture.with(configuration: Self.onePlace(timeout: .milliseconds(50))) { fixture in
            let engine = fixture.engine
            let writePath = try #require(engine.writePath)
            let sale = try await fixture.sale(stock: 5)
            _ = try await engine.placeOrder(Self.request(sale, key: "z1", buyer: "zoe"))
            #expect(writePath.acquire(then: { _ in }) == .taken)
            let (taken, answers) = Self.place(engine, Self.request(sale, key: "a1", buyer: "ana"))
            #expect(taken == .answering)
            await #expect(throws: WritePathFull(reason: .queueTimeout)) { try await Self.answer(of: answers).get() }
            writePath.release()
            #expect(writePath.snapshot.inFlight == 0 && writePath.snapshot.waiting == 0)
            #expect(try await fixture.conservedCounters(sale).available == 4, "nothing held for the attempt that timed out")
        }
    }
}
