import CrestCore
import CrestStore
import CrestTestSupport
import Foundation
import Testing

@Suite("Store conformance: several nodes on one database")
struct NodesConformanceTests {
    @Test(
        "two store instances on one database (two nodes) reserving at once: exactly the stock, no buyer over the limit",
        arguments: StoreKind.allCases)
    func twoNodes(kind: StoreKind) async throws {
        _ = try await kind.with { open in
            let nodes = [try await open(), try await open()]
            let sale = makeSale(stock: 150)
            try await nodes[0].createSale(sale)
            // 40 batches of 25 per node, buyers shared between the nodes: 1,000 buyers for 150 units.
            let outcomes = try await withThrowingTaskGroup(of: [ReservationOutcome].self) { group in
                for node in 0..<2 {
                    for batch in 0..<20 {
                        group.addTask {
                            let reservations = (0..<25).map { i in
                                reservation(sale, key: "n\(node)-\(batch)-\(i)", buyer: "buyer-\((batch * 25 + i) % 1000)")
                            }
                            return try await nodes[node].reserve(reservations).outcomes
                        }
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            let reserved = outcomes.compactMap { if case .reserved(let order) = $0 { order } else { nil } }
            #expect(reserved.count == 150)
            #expect(Set(reserved.map(\.buyer)).count == 150)
            #expect(try await nodes[1].sale(sale.id)?.stock == StockCounters(total: 150, available: 0, reserved: 150, sold: 0))
            let listed = try await nodes[1].orders(matching: OrderFilter(saleID: sale.id), after: nil, limit: 1000)
            #expect(listed.count == 150)
        }
    }

    @Test("two nodes claiming at once take different jobs: 500 jobs, each claimed once", arguments: StoreKind.allCases)
    func claimsAcrossNodes(kind: StoreKind) async throws {
        _ = try await kind.with { open in
            let nodes = [try await open(), try await open()]
            let now = millisecondNow()
            _ = try await nodes[0].enqueue((0..<500).map { NewJob(kind: "test.n", payload: "\($0)") }, at: now)
            let claimed = try await withThrowingTaskGroup(of: [JobID].self) { group in
                for node in 0..<2 {
                    for worker in 0..<4 {
                        group.addTask {
                            var mine: [JobID] = []
                            while true {
                                let claim = try await nodes[node].claimJobs(
                                    limit: 20, worker: "n\(node)w\(worker)", lease: .seconds(30), at: now)
                                if claim.jobs.isEmpty { return mine }
                                mine += claim.jobs.map(\.id)
                            }
                        }
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(claimed.count == 500)
            #expect(Set(claimed).count == 500)
        }
    }
}
