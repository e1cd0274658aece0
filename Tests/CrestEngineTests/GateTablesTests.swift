import CrestCore
import CrestStore
import Foundation
import Testing

@testable import CrestEngine

@Suite("A stock gate's tables: refusals, holdings, known keys")
struct GateTablesTests {
    @Test("a small memory forgets the oldest refusal first; a repeat keeps its place; a forgotten key is gone")
    func forgetsOldestFirst() {
        var memory = RefusalMemory<Int>(capacity: 3)
        for (index, key) in ["a", "b", "c"].enumerated() { memory.remember(index, for: key) }
        memory.remember(10, for: "a")  // a repeat: its answer changes, its place does not
        memory.remember(3, for: "d")
        #expect(memory["a"] == nil)
        #expect([memory["b"], memory["c"], memory["d"]] == [1, 2, 3])
        memory.forget("c")
        #expect(memory["c"] == nil && memory.count == 2)

        var none = RefusalMemory<Int>(capacity: 0)
        none.remember(1, for: "a")
        #expect(none["a"] == nil && none.count == 0)
    }

    /// Each remembered refusal held its key's and its buyer's strings: ≈ 150 bytes of RSS each.
    @Test("a remembered refusal is a 16-byte record, its key a hash")
    func refusalIsSmall() {
        #expect(MemoryLayout<StockGate.Refusal>.stride <= 16)
    }

    /// One dictionary of a sold-out sale's refusals rehashed all of them in the insert that
    /// doubled its storage (250 ms at 786,432 keys) while the gate's lock was held.
    @Test("a crowd's refusals: the memory stays at its capacity, keeps the latest, and no part of it grows past about a thousand")
    func crowdOfRefusals() {
        var memory = RefusalMemory<Int>(capacity: 200_000)
        for index in 0..<300_000 { memory.remember(index, for: "key-\(index)") }
        #expect(memory.count <= 200_000 && memory.count > 199_000)
        #expect(memory.largestShard <= 1_000)
        var forgottenOfTheLatest: [Int] = []
        for index in 299_000..<300_000 where memory["key-\(index)"] != index { forgottenOfTheLatest.append(index) }
        #expect(forgottenOfTheLatest.isEmpty)
        #expect(memory["key-0"] == nil)
    }

    /// Buyers' holdings and known keys grow with a sale's orders; in one dictionary the insert that
    /// doubled its storage rehashed every buyer under the gate's lock (197 ms at 786,432).
    @Test("holdings and known keys of a big sale: every entry where it was put, no shard past a few thousand")
    func bigSaleTables() {
        var holdings = ShardedDictionary<String, Int>(["ana": 2])
        var keys = ShardedSet<Int>([7])
        for index in 0..<300_000 {
            holdings["buyer-\(index)", default: 0] += 1
            keys.insert(index)
        }
        holdings["buyer-0", default: 0] += 1
        holdings["buyer-1"] = nil
        #expect(holdings.count == 300_000 && keys.count == 300_000)
        #expect(holdings["ana"] == 2 && holdings["buyer-0"] == 2 && holdings["buyer-1"] == nil)
        #expect(holdings["buyer-299999"] == 1 && holdings["nobody", default: 0] == 0)
        #expect(keys.contains(7) && keys.contains(299_999) && !keys.contains(300_000))
        #expect(holdings.largestShard < 2_000 && keys.largestShard < 2_000)
    }

    @Test("a gate is idle once no attempt came since the cutoff and none is in flight")
    func idleGate() throws {
        let now = Date()
        let sale = Sale(
            id: .make(), sku: "IDLE", title: "Idle", price: Money(amount: 100, currency: Currency("CNY")!),
            perBuyerLimit: 1, startsAt: now.addingTimeInterval(-1), endsAt: nil, paymentWindowSeconds: 900,
            createdAt: now, stock: StockCounters(total: 5, available: 5, reserved: 0, sold: 0))
        let gate = StockGate(
            snapshot: GateSnapshot(sale: sale, version: 1, holdings: [:], idempotencyKeys: []), refusalMemory: 10,
            loadedAt: now)
        #expect(gate.isIdle(since: now.addingTimeInterval(1)), "unused since it was loaded")
        #expect(!gate.isIdle(since: now.addingTimeInterval(-1)), "loaded after the cutoff")
        let request = OrderRequest(saleID: sale.id, idempotencyKey: "k", buyer: "ana", quantity: 1)
        let admission = try gate.admit(request, now: now) { sale in
            Reservation(
                orderID: .make(now: now), request: request, amount: sale.price, createdAt: now,
                expiresAt: now.addingTimeInterval(900))
        }
        guard case .admitted(let ticket) = admission else {
            Issue.record("\(admission)")
            return
        }
        #expect(!gate.isIdle(since: now.addingTimeInterval(-60)), "just used")
        #expect(!gate.isIdle(since: now.addingTimeInterval(1)), "an attempt is in flight")
        gate.abandon([ticket])
        #expect(gate.isIdle(since: now.addingTimeInterval(1)))
    }
}
