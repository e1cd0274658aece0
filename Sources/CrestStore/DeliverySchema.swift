import CrestCore

/// What both stores share about `webhook_deliveries` beyond its table.
enum DeliverySchema {
    /// An order's deliveries, for its timeline (the primary key leads with the endpoint).
    static let byOrder = "CREATE INDEX webhook_deliveries_by_order ON webhook_deliveries (order_id, sequence)"

    static func decode(_ id: WebhookEndpointID?) throws -> WebhookEndpointID {
        try SQLiteRows.decode(id, "webhook_deliveries.endpoint_id")
    }
}
