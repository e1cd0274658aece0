import CrestCore
import Foundation
import Testing

@Suite("Domain values")
struct DomainTests {
    @Test("order status: every arrow, repeated events are no-ops, final states refuse other events")
    func statusTransitions() throws {
        let pending = Order.Status.pendingPayment
        #expect(try pending.applying(.pay) == .paid)
        #expect(try pending.applying(.cancel) == .cancelled)
        #expect(try pending.applying(.expire) == .expired)
        #expect(try Order.Status.cancelled.applying(.cancel) == .cancelled)
        #expect(try Order.Status.paid.applying(.pay) == .paid)
        #expect(throws: OrderError.notPending(current: .paid)) { try Order.Status.paid.applying(.cancel) }
        #expect(throws: OrderError.notPending(current: .expired)) { try Order.Status.expired.applying(.pay) }
        #expect(throws: OrderError.notPending(current: .cancelled)) { try Order.Status.cancelled.applying(.expire) }
        #expect(Order.Status.allCases.filter(\.isLive) == [.pendingPayment, .paid])
    }

    @Test("UUIDv7 ids are version 7, RFC 9562 variant, and strictly increasing within a process")
    func timeOrderedIDs() {
        let now = Date()
        let ids = (0..<10_000).map { _ in TimeOrderedID.make(now: now) }
        for id in ids.prefix(10) {
            let bytes = id.uuid
            #expect(bytes.6 >> 4 == 7)
            #expect(bytes.8 >> 6 == 0b10)
        }
        let strings = ids.map { $0.uuidString.lowercased() }
        #expect(strings == strings.sorted())
        #expect(Set(strings).count == ids.count)
        // The last 62 bits are fresh randomness for every id (drawn from the system in blocks:
        // 10,000 ids span many blocks), not only the counter that keeps them increasing.
        let tails = ids.map { id in withUnsafeBytes(of: id.uuid) { $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self) } }
        #expect(Set(tails).count == ids.count)
        let millis = ids[0].uuid
        let stamp = (0..<6).reduce(UInt64(0)) { value, index in
            value << 8 | UInt64(withUnsafeBytes(of: millis) { $0[index] })
        }
        // The time's milliseconds, or later: ids never go back within a process, and other tests in
        // it make ids on clocks moved forward.
        #expect(stamp >= UInt64(now.timeIntervalSince1970 * 1000))
    }

    /// Only the canonical 8-4-4-4-12 form; Foundation's parser also takes some garbled ones
    /// (`967F6747-4EED-4044-97-D-1C5043017CF0`), which are not ids Crest ever wrote.
    @Test("ids parse the canonical UUID form in any case, to the value Foundation reads")
    func idParsing() {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789abcdefABCDEFgG-{} ".utf8)
        var checked = 0
        for _ in 0..<20_000 {
            var text = Array(UUID().uuidString.utf8)
            if Bool.random(using: &generator) { text = Array(String(decoding: text, as: UTF8.self).lowercased().utf8) }
            for _ in 0..<Int.random(in: 0...2, using: &generator) {
                let at = Int.random(in: 0..<text.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: text[at] = alphabet.randomElement(using: &generator)!
                case 1: text.insert(alphabet.randomElement(using: &generator)!, at: at)
                default: text.remove(at: at)
                }
            }
            let string = String(decoding: text, as: UTF8.self)
            let canonical = string.wholeMatch(of: /[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/) != nil
            #expect((SaleID(string) != nil) == canonical, "\(string)")
            if let id = SaleID(string) {
                #expect(id.uuid == UUID(uuidString: string), "\(string)")
                checked += 1
            }
        }
        #expect(checked > 1_000)
        for string in [
            "", "0", "01a214e7-1e39-7192-b7df-3241474b5a6", "01a214e7-1e39-7192-b7df-3241474b5a68a", "ü1a214e7-1e39-7192-b7df-3241474b5a6",
        ] {
            #expect(SaleID(string) == nil)
        }
        let id = OrderID.make()
        #expect(OrderID(id.description) == id)
        #expect(OrderID(id.description.uppercased()) == id)
    }

    @Test("money: currencies are three upper-case letters; products report overflow")
    func money() throws {
        #expect(Currency("CNY") != nil)
        #expect(Currency("cny") == nil)
        #expect(Currency("CN") == nil)
        #expect(Currency("CNYY") == nil)
        let price = Money(amount: 499_900, currency: try #require(Currency("CNY")))
        #expect(price.times(3)?.amount == 1_499_700)
        #expect(Money(amount: .max / 2, currency: price.currency).times(3) == nil)
    }

    @Test("sale drafts report every broken rule at once")
    func saleDraftValidation() throws {
        let cny = try #require(Currency("CNY"))
        let now = Date()
        let draft = SaleDraft(
            sku: " ", title: String(repeating: "t", count: 201), price: Money(amount: -1, currency: cny), stock: 0,
            perBuyerLimit: 0, startsAt: now, endsAt: now, paymentWindowSeconds: 0)
        do {
            _ = try draft.validated(id: SaleID.make(), now: now)
            Issue.record("an invalid draft was accepted")
        } catch {
            #expect(
                Set(error.issues.map(\.field)) == [
                    "sku", "title", "price.amount", "stock", "perBuyerLimit", "paymentWindowSeconds", "endsAt",
                ])
        }
        let sale = try SaleDraft(sku: "A", title: "B", price: Money(amount: 1, currency: cny), stock: 5)
            .validated(id: SaleID.make(), now: now)
        #expect(sale.stock == StockCounters(total: 5))
        #expect(sale.perBuyerLimit == 1 && sale.paymentWindowSeconds == 900)
        #expect(sale.phase(at: now) == .open)
        #expect(sale.phase(at: now.addingTimeInterval(-1)) == .upcoming)
    }

    @Test("order requests check key, buyer and quantity")
    func orderRequestValidation() throws {
        let sale = SaleID.make()
        let valid = OrderRequest(saleID: sale, idempotencyKey: "k-1", buyer: "ana", quantity: 1)
        try valid.validate()
        for bad in [
            OrderRequest(saleID: sale, idempotencyKey: "", buyer: "ana", quantity: 1),
            OrderRequest(saleID: sale, idempotencyKey: "has space", buyer: "ana", quantity: 1),
            OrderRequest(saleID: sale, idempotencyKey: String(repeating: "k", count: 256), buyer: "ana", quantity: 1),
            OrderRequest(saleID: sale, idempotencyKey: "k", buyer: "", quantity: 1),
            OrderRequest(saleID: sale, idempotencyKey: "k", buyer: String(repeating: "é", count: 129), quantity: 1),
            OrderRequest(saleID: sale, idempotencyKey: "k", buyer: "ana", quantity: 0),
        ] {
            #expect(throws: ValidationError.self) { try bad.validate() }
        }
        try OrderRequest(saleID: sale, idempotencyKey: "k", buyer: String(repeating: "é", count: 128), quantity: 1)
            .validate()
    }

    @Test("stock counters know when conservation holds")
    func conservation() {
        #expect(StockCounters(total: 10, available: 5, reserved: 3, sold: 2).isConserved)
        #expect(!StockCounters(total: 10, available: 5, reserved: 3, sold: 3).isConserved)
        #expect(!StockCounters(total: 10, available: 11, reserved: -1, sold: 0).isConserved)
    }
}
