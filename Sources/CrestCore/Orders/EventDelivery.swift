import Foundation

/// One of an order's events owed to one merchant endpoint: delivered (when its endpoint answered
/// 2xx), or still owed.
public struct EventDelivery: Sendable, Hashable {
    public var endpointID: WebhookEndpointID
    /// The event's sequence within its order.
    public var sequence: Int
    public var deliveredAt: Date?

    public init(endpointID: WebhookEndpointID, sequence: Int, deliveredAt: Date?) {
        self.endpointID = endpointID
        self.sequence = sequence
        self.deliveredAt = deliveredAt
    }
}
