import CrestCore
import Foundation
import Testing

/// The one function that decides a reservation, for the gate and both stores.
@Suite("Reservation rules")
struct ReservationRulesTests {
    static let opens = Date(timeIntervalSince1970: 1_000)
    static let closes = Date(timeIntervalSince1970: 2_000)
    static let sale = Sale(
        id: .make(), sku: "S", title: "T", price: Money(amount: 100, currency: Currency("CNY")!), perBuyerLimit: 2,
        startsAt: opens, endsAt: closes, paymentWindowSeconds: 60, createdAt: opens, stock: StockCounters(total: 5))

    static func decide(
        quantity: Int = 1, at time: Date = Date(timeIntervalSince1970: 1_500), known: Bool = false,
        cancelled: Bool = false, held: Int = 0, available: Int64 = 5, reads: inout [String]
    ) -> ReservationRules.Verdict {
        let request = OrderRequest(saleID: sale.id, idempotencyKey: "k", buyer: "ana", quantity: quantity)
        var log: [String] = []
        defer { reads = log }
        return ReservationRules.decide(
            request, sale: sale, at: time,
            knownKey: {
                log.append("key")
                return known
            },
            cancelled: {
                log.append("cancelled")
                return cancelled
            },
            held: {
                log.append("held")
                return held
            }, available: available)
    }

    @Test("each rule refuses with its own error, in order: key, phase, cancelled, quantity, limit, stock")
    func eachRule() {
        var reads: [String] = []
        #expect(Self.decide(reads: &reads) == .grant)
        #expect(reads == ["key", "cancelled", "held"])
        #expect(Self.decide(known: true, reads: &reads) == .knownKey)
        #expect(reads == ["key"], "a known key stands whatever else holds")
        #expect(Self.decide(at: Self.closes, known: true, reads: &reads) == .knownKey, "a replay after the close finds its order")
        #expect(Self.decide(at: Self.opens.addingTimeInterval(-1), reads: &reads) == .refused(.saleNotOpen(startsAt: Self.opens)))
        #expect(reads == ["key"], "nothing more is read once a rule refuses")
        #expect(Self.decide(at: Self.opens, reads: &reads) == .grant, "open from startsAt, inclusive")
        #expect(Self.decide(at: Self.closes, reads: &reads) == .refused(.saleClosed), "closed from endsAt, inclusive")
        #expect(Self.decide(cancelled: true, reads: &reads) == .refused(.attemptCancelled))
        #expect(Self.decide(quantity: 3, reads: &reads) == .refused(.quantityAboveLimit(limit: 2)))
        #expect(reads == ["key", "cancelled"])
        #expect(Self.decide(quantity: 2, held: 1, reads: &reads) == .refused(.buyerLimitReached(limit: 2)))
        #expect(Self.decide(quantity: 2, held: 0, available: 1, reads: &reads) == .refused(.soldOut))
        #expect(Self.decide(quantity: 2, held: 0, available: 2, reads: &reads) == .grant)
    }
}
