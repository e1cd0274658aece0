import Foundation

/// The jobs of an order's lifecycle.
public enum OrderJobs {
    /// Expires the order at its `expiresAt` unless it was paid or cancelled (TCC cancel).
    public static let expire = JobKind<OrderJob>("order.expire", maxAttempts: 25)
    /// Turns a paid order's reserved stock into sold (TCC confirm).
    public static let confirm = JobKind<OrderJob>("order.confirm", maxAttempts: 10)

    /// Expires each order it names, as `expire` does one: written once per reservation batch for
    /// the orders the batch created (they share their deadline within a few milliseconds), so an
    /// order's creation writes no job row of its own for its expiry.
    public static let expireBatch = JobKind<OrderBatchJob>("order.expire-batch", maxAttempts: 25)

    /// How far apart two deadlines may be and still share an expiry job: the job runs at the
    /// latest of them, so an order expires at most this long after its `expiresAt` (paying until
    /// then is still accepted).
    public static let expiryTolerance: TimeInterval = 0.1

    /// A single order's expiry: the one written before batch expiries (stores made before them),
    /// and the follow-up of an order its batch could not finish (a payment still processing, the
    /// provider out of reach), keyed so that a batch job run twice hands it over once.
    public static func expiry(of id: OrderID, at expiresAt: Date, unique: Bool = false) -> NewJob {
        expire.job(OrderJob(orderId: id), runAt: expiresAt, uniqueKey: unique ? "\(expire.name):\(id)" : nil)
    }

    /// The expiry jobs of orders created together: sorted by deadline, one job for each run of
    /// deadlines no more than `expiryTolerance` apart, due at the run's latest deadline. Orders of
    /// one batch and one sale make one job.
    public static func expiries(of orders: some Sequence<(id: OrderID, expiresAt: Date)>) -> [NewJob] {
        let sorted = orders.sorted { $0.expiresAt < $1.expiresAt }
        var jobs: [NewJob] = []
        var start = 0
        while start < sorted.count {
            var end = start + 1
            while end < sorted.count, sorted[end].expiresAt.timeIntervalSince(sorted[start].expiresAt) <= expiryTolerance {
                end += 1
            }
            let run = sorted[start..<end]
            jobs.append(expireBatch.job(OrderBatchJob(orderIds: run.map(\.id)), runAt: run.last?.expiresAt))
            start = end
        }
        return jobs
    }

    /// One live confirmation per order: a second payment signal while one waits adds nothing.
    public static func confirmation(of id: OrderID) -> NewJob {
        confirm.job(OrderJob(orderId: id), uniqueKey: "\(confirm.name):\(id)")
    }
}
