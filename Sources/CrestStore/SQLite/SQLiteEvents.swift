import CrestCore
import Foundation
import GRDB

/// Writes the outbox: one `order_events` row per order change, inside the change's transaction.
enum SQLiteEvents {
    /// Appends an event with a known sequence number (1 for `order.created`), and a delivery job
    /// for each of `endpoints` that wants it.
    static func append(
        _ db: Database, _ kind: OrderEvent.Kind, of order: Order, sequence: Int, at time: Date,
        endpoints: [WebhookEndpoint]
    ) throws {
        // The feed's next position: writers take turns, so positions follow commit order.
        try DirectStatement(
            db,
            sql: """
                INSERT INTO order_events (\(SQLiteRows.eventColumns), feed_position)
                VALUES (?, ?, ?, ?, ?, ?, (SELECT IFNULL(MAX(feed_position), 0) + 1 FROM order_events))
                """
        )
        .execute(
            EventID.make(now: time).description, order.id.description, order.saleID.description, sequence,
            kind.rawValue, SQLiteRows.millis(time))
        for endpoint in endpoints where endpoint.wants(kind) {
            let delivery = WebhookJobs.Delivery(endpointId: endpoint.id, orderId: order.id, sequence: sequence)
            try db.cachedStatement(
                sql: "INSERT INTO webhook_deliveries (endpoint_id, order_id, sequence) VALUES (?, ?, ?)"
            ).execute(arguments: [endpoint.id.description, order.id.description, sequence])
            try SQLiteJobs.insert(db, WebhookJobs.delivery(delivery), at: time)
        }
    }

    /// Appends an event after the order's last one.
    static func appendNext(_ db: Database, _ kind: OrderEvent.Kind, of order: Order, at time: Date) throws {
        let last =
            try Int.fetchOne(
                db.cachedStatement(sql: "SELECT COALESCE(MAX(sequence), 0) FROM order_events WHERE order_id = ?"),
                arguments: [order.id.description]) ?? 0
        try append(db, kind, of: order, sequence: last + 1, at: time, endpoints: try activeEndpoints(db))
    }

    /// The endpoints that receive events now.
    static func activeEndpoints(_ db: Database) throws -> [WebhookEndpoint] {
        try Row.fetchAll(
            db.cachedStatement(
                sql: "SELECT id, url, secret, event_types, created_at FROM webhook_endpoints WHERE deleted_at IS NULL")
        ).map(SQLiteRows.endpoint)
    }
}
