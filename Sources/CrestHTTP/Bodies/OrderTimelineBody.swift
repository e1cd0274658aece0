import CrestCore
import CrestEngine
import Foundation
import Hummingbird

/// `GET /v1/orders/{orderID}/timeline`: where an order's life went — each event (a stage) with its
/// time and its distance from the order's creation, and under each event its deliveries to the
/// merchant endpoints that wanted it (when each arrived, or that it is still owed).
struct OrderTimelineBody: Codable, ResponseEncodable {
    struct Stage: Codable {
        var event: OrderEvent.Kind
        var sequence: Int
        var at: Timestamp
        /// Seconds from the order's creation.
        var afterSeconds: Double
        var deliveries: [Delivery]
    }

    struct Delivery: Codable {
        var endpointId: WebhookEndpointID
        /// Absent while the delivery is still owed (its job retries with backoff).
        var deliveredAt: Timestamp?
        /// Seconds from the event to its delivery.
        var afterSeconds: Double?
    }

    var orderId: OrderID
    var status: Order.Status
    var createdAt: Timestamp
    var stages: [Stage]

    init(_ timeline: OrderTimeline) {
        let order = timeline.order
        orderId = order.id
        status = order.status
        createdAt = Timestamp(order.createdAt)
        let bySequence = Dictionary(grouping: timeline.deliveries, by: \.sequence)
        stages = timeline.events.map { event in
            Stage(
                event: event.kind, sequence: event.sequence, at: Timestamp(event.occurredAt),
                afterSeconds: Self.seconds(event.occurredAt.timeIntervalSince(order.createdAt)),
                deliveries: (bySequence[event.sequence] ?? []).map { delivery in
                    Delivery(
                        endpointId: delivery.endpointID, deliveredAt: delivery.deliveredAt.map(Timestamp.init),
                        afterSeconds: delivery.deliveredAt.map { Self.seconds($0.timeIntervalSince(event.occurredAt)) })
                })
        }
    }

    /// Milliseconds, as the store keeps times.
    static func seconds(_ interval: TimeInterval) -> Double { (interval * 1000).rounded() / 1000 }
}
