import CrestCore
import Foundation

/// What `crest audit` reads: the store as one consistent view (one read transaction), everything
/// a promise speaks of. Completed jobs are left out (they promise nothing more, and are pruned).
public struct AuditRecords: Sendable {
    public var sales: [Sale]
    public var orders: [Order]
    /// Every order's events.
    public var events: [OrderEvent]
    /// Every job not completed: live ones (scheduled, available, running, retryable) and discarded ones.
    public var jobs: [Job]
    /// The merchant endpoints not deleted.
    public var endpoints: [WebhookEndpoint]
    /// The (endpoint, order, event) deliveries that reached their endpoint.
    public var delivered: Set<WebhookJobs.Delivery>
    /// The differences reconciliation reported, each once (its newest item), with the operator's
    /// resolution where one was given.
    public var reported: [ReconciliationItem]
    /// The store's time of the read (leases are judged against it).
    public var readAt: Date

    public init(
        sales: [Sale], orders: [Order], events: [OrderEvent], jobs: [Job], endpoints: [WebhookEndpoint],
        delivered: Set<WebhookJobs.Delivery>, reported: [ReconciliationItem], readAt: Date
    ) {
        self.sales = sales
        self.orders = orders
        self.events = events
        self.jobs = jobs
        self.endpoints = endpoints
        self.delivered = delivered
        self.reported = reported
        self.readAt = readAt
    }
}

/// The audit's reads, the same SQL on both stores (each decodes the rows its own way).
enum AuditQueries {
    static let sales = "SELECT \(SQLiteRows.saleColumns) FROM sales ORDER BY id"
    static let orders = "SELECT \(SQLiteRows.orderColumns) FROM orders ORDER BY id"
    static let events = "SELECT \(SQLiteRows.eventColumns) FROM order_events ORDER BY order_id, sequence"
    static let jobs = "SELECT \(SQLiteRows.jobColumns) FROM jobs WHERE state <> 'completed' ORDER BY id"
    static let delivered = "SELECT endpoint_id, order_id, sequence FROM webhook_deliveries WHERE delivered_at IS NOT NULL"

    static func delivery(endpoint: String, order: String, sequence: Int) throws -> WebhookJobs.Delivery {
        WebhookJobs.Delivery(
            endpointId: try SQLiteRows.decode(WebhookEndpointID(endpoint), "webhook_deliveries.endpoint_id"),
            orderId: try SQLiteRows.decode(OrderID(order), "webhook_deliveries.order_id"), sequence: sequence)
    }
}
