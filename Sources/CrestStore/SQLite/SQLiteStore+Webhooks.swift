import CrestCore
import Foundation
import GRDB

extension SQLiteStore {
    public func createWebhookEndpoint(_ endpoint: WebhookEndpoint) async throws {
        try await pool.write { db in
            try db.execute(
                sql: "INSERT INTO webhook_endpoints (id, url, secret, event_types, created_at) VALUES (?, ?, ?, ?, ?)",
                arguments: [
                    endpoint.id.description, endpoint.url, endpoint.secret,
                    endpoint.eventTypes.map(\.rawValue).sorted().joined(separator: ","),
                    SQLiteRows.millis(endpoint.createdAt),
                ])
        }
    }

    public func webhookEndpoints() async throws -> [WebhookEndpoint] {
        try await pool.read { db in try SQLiteEvents.activeEndpoints(db).sorted { $0.id < $1.id } }
    }

    public func deleteWebhookEndpoint(_ id: WebhookEndpointID, at now: Date) async throws -> Bool {
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE webhook_endpoints SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                arguments: [SQLiteRows.millis(now), id.description])
            return db.changesCount == 1
        }
    }

    public func webhookDelivery(_ delivery: WebhookJobs.Delivery) async throws -> WebhookDeliveryContext? {
        try await pool.read { db in
            guard
                let event = try Row.fetchOne(
                    db,
                    sql: "SELECT \(SQLiteRows.eventColumns) FROM order_events WHERE order_id = ? AND sequence = ?",
                    arguments: [delivery.orderId.description, delivery.sequence]
                ).map(SQLiteRows.event),
                let order = try Self.fetchOrder(db, id: delivery.orderId)
            else { return nil }
            let endpoint = try Row.fetchOne(
                db,
                sql: """
                    SELECT id, url, secret, event_types, created_at FROM webhook_endpoints
                    WHERE id = ? AND deleted_at IS NULL
                    """,
                arguments: [delivery.endpointId.description]
            ).map(SQLiteRows.endpoint)
            let waiting =
                try Int.fetchOne(
                    db,
                    sql: """
                        SELECT COUNT(*) FROM webhook_deliveries
                        WHERE endpoint_id = ? AND order_id = ? AND sequence < ? AND delivered_at IS NULL
                        """,
                    arguments: [delivery.endpointId.description, delivery.orderId.description, delivery.sequence]) ?? 0
            return WebhookDeliveryContext(endpoint: endpoint, event: event, order: order, previousDelivered: waiting == 0)
        }
    }

    public func markDelivered(_ delivery: WebhookJobs.Delivery, at now: Date) async throws {
        try await pool.write { db in
            try db.execute(
                sql: """
                    UPDATE webhook_deliveries SET delivered_at = COALESCE(delivered_at, ?)
                    WHERE endpoint_id = ? AND order_id = ? AND sequence = ?
                    """,
                arguments: [
                    SQLiteRows.millis(now), delivery.endpointId.description, delivery.orderId.description,
                    delivery.sequence,
                ])
        }
    }

    public func deliveries(of orderID: OrderID) async throws -> [EventDelivery] {
        try await pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT endpoint_id, sequence, delivered_at FROM webhook_deliveries
                    WHERE order_id = ? ORDER BY sequence, endpoint_id
                    """, arguments: [orderID.description]
            ).map { row in
                EventDelivery(
                    endpointID: try DeliverySchema.decode(WebhookEndpointID(row[0] as String)),
                    sequence: row[1], deliveredAt: (row[2] as Int64?).map(SQLiteRows.date))
            }
        }
    }
}
