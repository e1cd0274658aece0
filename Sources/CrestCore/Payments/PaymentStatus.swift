import Foundation

/// Where a payment stands at the provider.
///
/// Provider notifications can come twice, late or out of order, so the state machine only moves
/// forward: each observed status is merged with the known one and the further one wins.
///
/// ```
/// created → processing → succeeded → refunded
///                     ↘ failed ↗ (the buyer may pay again after a failure)
/// ```
public enum PaymentStatus: String, Sendable, Hashable, Codable, CaseIterable {
    case created
    case processing
    case failed
    case succeeded
    case refunded

    private var rank: Int {
        switch self {
        case .created: 0
        case .processing: 1
        case .failed: 2
        case .succeeded: 3
        case .refunded: 4
        }
    }

    /// The status after also observing `observed`: the further of the two.
    public func merged(with observed: PaymentStatus) -> PaymentStatus {
        observed.rank > rank ? observed : self
    }
}

/// An order's payment as Crest knows it.
public struct OrderPayment: Sendable, Hashable {
    /// The provider's id of the payment.
    public var id: String
    public var status: PaymentStatus
    /// Where the buyer pays, when the provider gave one.
    public var payURL: String?

    public init(id: String, status: PaymentStatus, payURL: String?) {
        self.id = id
        self.status = status
        self.payURL = payURL
    }
}

/// What the provider says about a payment, from any source: the answer to creating it, a webhook,
/// a status query, a refund.
public struct PaymentObservation: Sendable, Hashable {
    public var orderID: OrderID
    public var payment: OrderPayment
    /// The provider's event id when the observation is a webhook (deduplicated on it).
    public var eventID: String?

    public init(orderID: OrderID, payment: OrderPayment, eventID: String? = nil) {
        self.orderID = orderID
        self.payment = payment
        self.eventID = eventID
    }
}

/// The jobs of an order's payment.
public enum PaymentJobs {
    /// Creates the order's payment at the provider (idempotency key: the order id): the follow-up
    /// of an order its batch could not finish, and the job of stores made before batch creation.
    public static let create = JobKind<OrderJob>("payment.create", maxAttempts: 25)
    /// Creates the payments of orders reserved together, each as `create` does one: written once
    /// per reservation batch (in chunks of `creationBatchSize`), so that an order's creation writes
    /// no job row of its own for its payment, and its payment is created without a job run of its own.
    public static let createBatch = JobKind<PaymentBatchJob>("payment.create-batch", maxAttempts: 25)

    /// How many orders one `payment.create-batch` job names at most: the provider calls of a chunk
    /// share one job run and its timeout, and several chunks run side by side.
    public static let creationBatchSize = 64
    /// Refunds a payment that succeeded after its order was cancelled or expired.
    public static let refund = JobKind<OrderJob>("payment.refund", maxAttempts: 25)
    /// Asks the provider how an awaited payment stands, again and again with growing pauses until
    /// the order ends: a success (or failure) whose webhook was lost is found before the expiry.
    public static let check = JobKind<OrderJob>("payment.check", maxAttempts: 25)

    /// The check of the order's payment, first due at `runAt`: one live per order.
    public static func checking(_ id: OrderID, at runAt: Date) -> NewJob {
        check.job(OrderJob(orderId: id), runAt: runAt, uniqueKey: "\(check.name):\(id)")
    }

    /// The creation of one order's payment, due at `runAt` (now when nil), in the trace of the
    /// placement that made the order: one live per order, so that a batch job run twice hands an
    /// order over once.
    public static func creation(of id: OrderID, at runAt: Date? = nil, traceParent: String? = nil) -> NewJob {
        create.job(OrderJob(orderId: id), runAt: runAt, uniqueKey: "\(create.name):\(id)", traceParent: traceParent)
    }

    /// The payment creations of orders reserved together: one `payment.create-batch` job for each
    /// `creationBatchSize` of them, in their order, with each order's trace when it was traced.
    public static func creations(of orders: some Sequence<(id: OrderID, traceParent: String?)>) -> [NewJob] {
        var jobs: [NewJob] = []
        var chunk = PaymentBatchJob(orderIds: [])
        func flush() {
            guard !chunk.orderIds.isEmpty else { return }
            jobs.append(createBatch.job(chunk))
            chunk = PaymentBatchJob(orderIds: [])
        }
        for order in orders {
            chunk.append(order.id, traceParent: order.traceParent)
            if chunk.orderIds.count == creationBatchSize { flush() }
        }
        flush()
        return jobs
    }

    public static func refund(of id: OrderID) -> NewJob {
        refund.job(OrderJob(orderId: id), uniqueKey: "\(refund.name):\(id)")
    }
}
