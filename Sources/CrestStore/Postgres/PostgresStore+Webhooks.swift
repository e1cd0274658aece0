import CrestCore
import Foundation
import PostgresNIO

extension PostgresStore {
    public func createWebhookEndpoint(_ endpoint: WebhookEndpoint) async throws {
        _ = try await rows(
            """
            INSERT INTO webhook_endpoints (id, url, secret, event_types, created_at)
            VALUES (\(endpoint.id.description), \(endpoint.url), \(endpoint.secret),
                \(endpoint.eventTypes.map(\.rawValue).sorted().joined(separator: ",")),
                \(PostgresRows.millis(endpoint.createdAt)))
            """)
    }

    public func webhookEndpoints() async throws -> [WebhookEndpoint] {
        try await withConnection { connection in
            try await PostgresEvents.activeEndpoints(on: connection, logger: self.logger).sorted { $0.id < $1.id }
        }
    }

    public func deleteWebhookEndpoint(_ id: WebhookEndpointID, at now: Date) async throws -> Bool {
        try await rows(
            """
            UPDATE webhook_endpoints SET deleted_at = \(PostgresRows.millis(now))
            WHERE id = \(id.description) AND deleted_at IS NULL RETURNING 1
            """
        ).count == 1
    }

    public func webhookDelivery(_ delivery: WebhookJobs.Delivery) async throws -> WebhookDeliveryContext? {
        let order = delivery.orderId.description
        let endpointID = delivery.endpointId.description
        return try await withConnection { connection in
            guard
                let event = try await connection.query(
                    """
                    SELECT \(unescaped: PostgresRows.eventColumns) FROM order_events
                    WHERE order_id = \(order) AND sequence = \(delivery.sequence)
                    """, logger: self.logger
                ).collect().first.map(PostgresRows.event),
                let order = try await connection.query(
                    "SELECT \(unescaped: PostgresRows.orderColumns) FROM orders WHERE id = \(order)", logger: self.logger
                ).collect().first.map(PostgresRows.order)
            else { return nil }
            let endpoint = try await connection.query(
                """
                SELECT \(unescaped: PostgresRows.endpointColumns) FROM webhook_endpoints
                WHERE id = \(endpointID) AND deleted_at IS NULL
                """, logger: self.logger
            ).collect().first.map(PostgresRows.endpoint)
            let waiting =
                try await connection.query(
                    """
                    SELECT COUNT(*) FROM webhook_deliveries
                    WHERE endpoint_id = \(endpointID) AND order_id = \(order.id.description)
                        AND sequence < \(delivery.sequence) AND delivered_at IS NULL
                    """, logger: self.logger
                ).values(Int64.self).first ?? 0
            return WebhookDeliveryContext(endpoint: endpoint, event: event, order: order, previousDelivered: waiting == 0)
        }
    }

    public func markDelivered(_ delivery: WebhookJobs.Delivery, at now: Date) async throws {
        _ = try await rows(
            """
            UPDATE webhook_deliveries SET delivered_at = COALESCE(delivered_at, \(PostgresRows.millis(now)))
            WHERE endpoint_id = \(delivery.endpointId.description) AND order_id = \(delivery.orderId.description)
                AND sequence = \(delivery.sequence)
            """)
    }

    public func deliveries(of orderID: OrderID) async throws -> [EventDelivery] {
        try await rows(
            """
            SELECT endpoint_id, sequence, delivered_at FROM webhook_deliveries
            WHERE order_id = \(orderID.description) ORDER BY sequence, endpoint_id
            """
        ).map { row in
            let (endpoint, sequence, deliveredAt) = try row.decode((String, Int64, Int64?).self)
            return EventDelivery(
                endpointID: try DeliverySchema.decode(WebhookEndpointID(endpoint)), sequence: Int(sequence),
                deliveredAt: deliveredAt.map(PostgresRows.date))
        }
    }
}
