import CrestCore
import Foundation
import GRDB
import Testing

@testable import CrestStore

@Suite("Schema migrations")
struct MigrationTests {
    @Test("orders from before the job queue get their events, and pending ones an expiry job; the events their feed positions")
    func backfillsEventsAndExpiryJobs() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-migration-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let sale = SaleID.make()
        let ids = (0..<3).map { _ in OrderID.make() }
        let created: Int64 = 1_790_000_000_000
        do {
            let pool = try DatabasePool(path: directory.appending(path: "crest.sqlite").path)
            try SQLiteMigrations.migrator.migrate(pool, upTo: "v1: sales and orders")
            try await pool.write { db in
                try db.execute(
                    sql: """
                        INSERT INTO sales (id, sku, title, price_amount, currency, per_buyer_limit, starts_at,
                            payment_window_seconds, created_at, total, available, reserved, sold)
                        VALUES (?, 'SKU', 'Old sale', 100, 'CNY', 1, ?, 900, ?, 3, 1, 1, 1)
                        """,
                    arguments: [sale.description, created, created])
                for (id, status) in zip(ids, ["pending_payment", "paid", "cancelled"]) {
                    try db.execute(
                        sql: """
                            INSERT INTO orders (id, sale_id, buyer, quantity, amount, currency, status, idempotency_key,
                                created_at, expires_at, updated_at)
                            VALUES (?, ?, ?, 1, 100, 'CNY', ?, ?, ?, ?, ?)
                            """,
                        arguments: [
                            id.description, sale.description, "buyer-\(status)", status, "key-\(status)", created,
                            created + 900_000, created + 1_000,
                        ])
                }
            }
            try pool.close()
        }

        let store = try SQLiteStore(directory: directory)
        #expect(try await store.events(of: ids[0]).map(\.kind) == [.created])
        #expect(try await store.events(of: ids[1]).map(\.kind) == [.created, .paid])
        #expect(try await store.events(of: ids[2]).map(\.kind) == [.created, .cancelled])
        #expect(try await store.events(of: ids[1]).map(\.sequence) == [1, 2])
        let jobs = try await store.jobs(matching: JobFilter(kind: OrderJobs.expire.name), after: nil, limit: 10)
        #expect(jobs.count == 1)
        #expect(jobs.first.flatMap { try? OrderJobs.expire.parameters(of: $0).orderId } == ids[0])
        #expect(jobs.first?.runAt == Date(timeIntervalSince1970: Double(created + 900_000) / 1000))
        // Those events take their places in the event feed, each order's in sequence, and new
        // ones follow them.
        let feed = try await store.eventFeed(after: 0, limit: 10)
        #expect(feed.events.map(\.position) == [1, 2, 3, 4, 5] && feed.head == 5)
        for id in ids {
            #expect(feed.events.filter { $0.event.orderID == id }.map(\.event.sequence) == (id == ids[0] ? [1] : [1, 2]))
        }
        _ = try await store.transition(ids[0], by: .cancel, at: Date())
        #expect(try await store.eventFeed(after: 5, limit: 10).events.map(\.position) == [6])
        try await store.close()
    }
}
