import CrestCore
import Foundation

/// The counters of a sale after a change, and a version that grows with each change, so that a
/// reader that receives snapshots out of order keeps the newest.
public struct CounterSnapshot: Sendable, Hashable {
    public var counters: StockCounters
    public var version: Int64

    public init(counters: StockCounters, version: Int64) {
        self.counters = counters
        self.version = version
    }
}

/// A sale's state as the stock gate needs it: counters, what each buyer holds, the keys used.
public struct GateSnapshot: Sendable {
    public var sale: Sale
    public var version: Int64
    /// Units held by each buyer's live orders (pending payment or paid).
    public var holdings: [String: Int]
    /// Idempotency keys of every order of the sale.
    public var idempotencyKeys: [String]

    public init(sale: Sale, version: Int64, holdings: [String: Int], idempotencyKeys: [String]) {
        self.sale = sale
        self.version = version
        self.holdings = holdings
        self.idempotencyKeys = idempotencyKeys
    }
}

/// One request for stock inside a batch, already admitted by the gate and given its order id.
public struct Reservation: Sendable, Hashable {
    public var orderID: OrderID
    public var request: OrderRequest
    public var amount: Money
    public var createdAt: Date
    public var expiresAt: Date
    /// Enqueued in the reservation's transaction when the order is created. Its expiry is the
    /// store's: one `order.expire-batch` job for the batch's orders.
    public var jobs: [NewJob]
    /// Whether the order's payment is to be created at the provider: the store's too, one
    /// `payment.create-batch` job for the batch's orders that need one (`PaymentJobs.creations`).
    public var createsPayment: Bool
    /// The W3C `traceparent` of the placement, if it was traced: the order's payment creation
    /// continues its trace.
    public var traceParent: String?

    public init(
        orderID: OrderID, request: OrderRequest, amount: Money, createdAt: Date, expiresAt: Date, jobs: [NewJob] = [],
        createsPayment: Bool = false, traceParent: String? = nil
    ) {
        self.orderID = orderID
        self.request = request
        self.amount = amount
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.jobs = jobs
        self.createsPayment = createsPayment
        self.traceParent = traceParent
    }
}

/// What the store decided for one reservation.
public enum ReservationOutcome: Sendable, Hashable {
    /// The order exists now, durably.
    case reserved(Order)
    /// Not reserved, for this reason.
    case refused(OrderError)
    /// The idempotency key already names this order (placed earlier, maybe by another node).
    case duplicate(Order)
}

/// The outcome of each reservation, in the batch's order, and the counters of every sale touched.
public struct ReservationBatchResult: Sendable {
    public var outcomes: [ReservationOutcome]
    public var counters: [SaleID: CounterSnapshot]

    public init(outcomes: [ReservationOutcome], counters: [SaleID: CounterSnapshot]) {
        self.outcomes = outcomes
        self.counters = counters
    }
}
