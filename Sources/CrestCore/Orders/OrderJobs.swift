import Foundation

/// The jobs of an order's lifecycle.
public enum OrderJobs {
    /// Expires the order at its `expiresAt` unless it was paid or cancelled (TCC cancel).
    public static let expire = JobKind<OrderJob>("order.expire", maxAttempts: 25)
    /// Turns a paid order's reserved stock into sold (TCC confirm).
    public static let confirm = JobKind<OrderJob>("order.confirm", maxAttempts: 10)

    public static func expiry(of id: OrderID, at expiresAt: Date) -> NewJob {
        expire.job(OrderJob(orderId: id), runAt: expiresAt)
    }

    /// One live confirmation per order: a second payment signal while one waits adds nothing.
    public static func confirmation(of id: OrderID) -> NewJob {
        confirm.job(OrderJob(orderId: id), uniqueKey: "\(confirm.name):\(id)")
    }
}
