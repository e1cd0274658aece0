import CrestCore
import CrestEngine
import CrestTestSupport
import Foundation
import Testing

@Suite("Merged writes")
struct MergingTests {
    /// Holds the first batch in the store until every other request queued behind it, then lets
    /// everything through; returns the sizes of the store transactions the requests took.
    static func batches(for requests: Int, maxBatchSize: Int) async throws -> [Int] {
        try await EngineFixture.withControllableStore(
            configuration: EngineConfiguration(maxBatchSize: maxBatchSize)
        ) { fixture, controllable in
            let sale = try await fixture.sale(stock: Int64(requests))
            controllable.hold()
            async let placed = concurrently(requests, width: requests) { index in
                try? await fixture.order(sale, buyer: "buyer-\(index)", key: "key-\(index)")
            }
            while controllable.batchSizes.value.reduce(0, +) + fixture.engine.queuedReservations < requests {
                try await Task.sleep(for: .milliseconds(1))
            }
            controllable.release()
            let orders = await placed.compactMap { $0 }
            #expect(orders.count == requests)
            #expect(try await fixture.engine.sale(sale.id).stock.reserved == Int64(requests))
            return controllable.batchSizes.value
        }
    }

    @Test("requests that queue while a batch commits are committed together in the next transaction")
    func queuedRequestsShareOneTransaction() async throws {
        let batches = try await Self.batches(for: 100, maxBatchSize: 512)
        #expect(batches.count <= 2, "\(batches)")
        #expect(batches.reduce(0, +) == 100)
    }

    @Test("a batch never exceeds the maximum batch size")
    func batchesAreCapped() async throws {
        let batches = try await Self.batches(for: 101, maxBatchSize: 10)
        #expect(batches.allSatisfy { $0 <= 10 }, "\(batches)")
        #expect(batches.dropFirst().dropLast().allSatisfy { $0 == 10 }, "\(batches)")
        #expect(batches.reduce(0, +) == 101)
    }
}
