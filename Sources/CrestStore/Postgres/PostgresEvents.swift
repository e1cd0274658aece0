import CrestCore
import Foundation
import Logging
import PostgresNIO

/// The outbox: one `order_events` row per order change, inside the change's transaction, and a
/// delivery (row and job) for each merchant endpoint that wants it.
enum PostgresEvents {
    /// For each endpoint that wants `kind`, a delivery row and its job.
    static func deliver(
        _ kind: OrderEvent.Kind, of order: Order, sequence: Int, at time: Date, to endpoints: [WebhookEndpoint],
        on connection: PostgresConnection, logger: Logger
    ) async throws {
        for endpoint in endpoints where endpoint.wants(kind) {
            let delivery = WebhookJobs.Delivery(endpointId: endpoint.id, orderId: order.id, sequence: sequence)
            try await connection.query(
                """
                INSERT INTO webhook_deliveries (endpoint_id, order_id, sequence)
                VALUES (\(endpoint.id.description), \(order.id.description), \(sequence))
                """, logger: logger)
            try await PostgresJobs.insert(WebhookJobs.delivery(delivery), at: time, on: connection, logger: logger)
        }
    }

    static func activeEndpoints(on connection: PostgresConnection, logger: Logger) async throws -> [WebhookEndpoint] {
        try await connection.query(activeEndpointsQuery, logger: logger).collect().map(PostgresRows.endpoint)
    }

    static var activeEndpointsQuery: PostgresQuery {
        "SELECT \(unescaped: PostgresRows.endpointColumns) FROM webhook_endpoints WHERE deleted_at IS NULL"
    }
}
