import CrestCore
import CrestEngine
import CrestTestSupport
import Foundation
import Testing

@Suite("A crowd on one sale")
struct CrowdTests {
    @Test("100,000 attempts from 60,000 buyers on 10,000 units reserve exactly the stock, and every key replays")
    func crowdReservesExactlyTheStock() async throws {
        try await EngineFixture.with { fixture in
            let sale = try await fixture.sale(stock: 10_000)
            let attempts = 100_000
            let buyers = 60_000
            let results = await concurrently(attempts) { attempt in
                await AttemptResult.of {
                    try await fixture.order(sale, buyer: "buyer-\(attempt % buyers)", key: "key-\(attempt)")
                }
            }
            var orderBuyers: [OrderID: String] = [:]
            for (attempt, result) in results.enumerated() {
                switch result {
                case .order(let id): orderBuyers[id] = "buyer-\(attempt % buyers)"
                case .refused(.soldOut), .refused(.buyerLimitReached): break
                default: Issue.record("attempt \(attempt) ended \(result)")
                }
            }
            #expect(orderBuyers.count == 10_000)
            #expect(Set(orderBuyers.values).count == 10_000, "a buyer holds two orders")

            let counters = try await fixture.engine.sale(sale.id).stock
            #expect(counters == StockCounters(total: 10_000, available: 0, reserved: 10_000, sold: 0))

            // Replaying every attempt's key gives the same answer.
            let replays = await concurrently(attempts) { attempt in
                await AttemptResult.of {
                    try await fixture.order(sale, buyer: "buyer-\(attempt % buyers)", key: "key-\(attempt)")
                }
            }
            let mismatches = zip(results, replays).filter { $0 != $1 }.count
            #expect(mismatches == 0)
            #expect(try await fixture.engine.sale(sale.id).stock.reserved == 10_000)
        }
    }
}
