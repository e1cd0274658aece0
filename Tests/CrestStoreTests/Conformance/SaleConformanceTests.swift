import CrestCore
import CrestStore
import CrestTestSupport
import Foundation
import Testing

/// The conformance suites: what the engine relies on, one rule per test, checked against the
/// embedded store and the PostgreSQL store alike (every test runs once per `StoreKind`).
@Suite("Store conformance: sales, their limits and risk rules")
struct SaleConformanceTests {
    @Test("sales are stored with their counters and read back equal", arguments: StoreKind.allCases)
    func salesReadBack(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let first = makeSale(stock: 10)
            let second = makeSale(stock: 20, perBuyerLimit: 2, endsAt: millisecondNow(3600))
            try await store.createSale(first)
            try await store.createSale(second)
            #expect(try await store.sale(first.id) == first)
            #expect(try await store.sale(second.id) == second)
            #expect(try await store.sale(.make()) == nil)
        }
    }

    @Test("sales are listed in id order, a page after a given id", arguments: StoreKind.allCases)
    func salesListed(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let first = makeSale(stock: 10)
            let second = makeSale(stock: 20)
            try await store.createSale(first)
            try await store.createSale(second)
            #expect(try await store.sales(after: nil, limit: 10).map(\.id) == [first.id, second.id])
            #expect(try await store.sales(after: first.id, limit: 10).map(\.id) == [second.id])
            #expect(try await store.sales(after: nil, limit: 1).map(\.id) == [first.id])
        }
    }

    @Test("risk rules are kept with their match, note and expiry, listed oldest first", arguments: StoreKind.allCases)
    func riskRulesKept(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let rules = Self.riskRules(at: millisecondNow(0))
            for rule in rules { try await store.createRiskRule(rule) }
            #expect(try await store.riskRules() == rules)
        }
    }

    @Test("a risk rule is deleted once; an unknown one is not found", arguments: StoreKind.allCases)
    func riskRulesDeleted(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let now = millisecondNow(0)
            let rules = Self.riskRules(at: now)
            for rule in rules { try await store.createRiskRule(rule) }
            #expect(try await store.deleteRiskRule(rules[1].id, at: now))
            #expect(try await store.deleteRiskRule(rules[1].id, at: now) == false)
            #expect(try await store.deleteRiskRule(.make(), at: now) == false)
            #expect(try await store.riskRules() == [rules[0], rules[2]])
        }
    }

    @Test("a sale's own rate limits are kept when the sale is created", arguments: StoreKind.allCases)
    func saleLimitsCreated(kind: StoreKind) async throws {
        try await kind.withStore { store in
            var sale = makeSale(stock: 10)
            sale.limits = SaleLimits(perBuyer: RateLimit(rate: 2, burst: 4))
            try await store.createSale(sale)
            #expect(try await store.sale(sale.id)?.limits == sale.limits)
        }
    }

    @Test("a sale's rate limits are replaced and removed, nothing else of the sale changes", arguments: StoreKind.allCases)
    func saleLimitsUpdated(kind: StoreKind) async throws {
        try await kind.withStore { store in
            var sale = makeSale(stock: 10)
            sale.limits = SaleLimits(perBuyer: RateLimit(rate: 2, burst: 4))
            try await store.createSale(sale)
            let both = SaleLimits(perBuyer: RateLimit(rate: 1, burst: 1), perSale: RateLimit(rate: 500, burst: 900))
            var updated = try #require(try await store.updateSaleLimits(sale.id, to: both))
            #expect(updated.limits == both)
            #expect(updated.stock == sale.stock)
            #expect(try await store.sale(sale.id)?.limits == both)
            updated = try #require(try await store.updateSaleLimits(sale.id, to: .none))
            #expect(updated.limits == .none)
            #expect(try await store.sale(sale.id)?.limits == SaleLimits.none)
            #expect(try await store.updateSaleLimits(.make(), to: both) == nil)
        }
    }

    /// One rule of each match: a buyer, an address range with an expiry, a velocity.
    static func riskRules(at now: Date) -> [RiskRule] {
        [
            RiskRule(id: .make(now: now), match: .buyer("mallory"), note: "chargebacks", createdAt: now),
            RiskRule(
                id: .make(now: now + 0.001), match: .address("203.0.113.0/24"), createdAt: now,
                expiresAt: millisecondNow(3600)),
            RiskRule(
                id: .make(now: now + 0.002),
                match: .velocity(
                    .init(scope: .buyer, measure: .distinctKeys, limit: 5, windowSeconds: 60, coolDownSeconds: 600)),
                createdAt: now),
        ]
    }
}
