import CrestCore
import Foundation
import GRDB
import Testing

@testable import CrestStore

/// The embedded store keeps a provider event's id only when the event changed something: a
/// webhook that repeats what the order shows (the `created` event after the provider's own
/// answer) costs no write, and so no sync.
@Suite("Provider events kept")
struct ProviderEventTests {
    @Test("an event that repeats what the order shows leaves no row; one that changes the order does, once")
    func onlyChangesAreKept() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-events-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try SQLiteStore(directory: directory)
        let (_, orders) = try await TransitionConformanceTests.pendingOrders(1, on: store)
        let order = orders[0]
        func observe(_ status: PaymentStatus, event: String?) -> PaymentObservation {
            PaymentObservation(
                orderID: order.id, payment: OrderPayment(id: "pi_1", status: status, payURL: "http://psp/pay/pi_1"),
                eventID: event)
        }
        func kept() async throws -> [String] {
            try await store.pool.read { db in try String.fetchAll(db, sql: "SELECT id FROM provider_events ORDER BY id") }
        }
        let answer = try await store.recordPayments([observe(.created, event: nil)], at: millisecondNow())
        #expect(try answer[0].get().attachedPayment)
        let created = try await store.recordPayments([observe(.created, event: "evt_created")], at: millisecondNow())
        #expect(try created[0].get().duplicate)
        #expect(try await kept() == [])
        let paid = try await store.recordPayments(
            [observe(.succeeded, event: "evt_paid"), observe(.succeeded, event: "evt_paid")], at: millisecondNow())
        #expect(try paid[0].get().transition?.change == .applied)
        #expect(try paid[1].get().duplicate)
        #expect(try await kept() == ["evt_paid"])
        try await store.close()
    }
}
