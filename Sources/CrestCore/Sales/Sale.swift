import Foundation

/// A flash sale: one item, a fixed stock, a price, a per-buyer limit and a time window.
public struct Sale: Sendable, Hashable {
    /// Where a sale stands in time.
    public enum Phase: Sendable, Hashable {
        case upcoming
        case open
        case closed
    }

    public var id: SaleID
    public var sku: String
    public var title: String
    public var price: Money
    public var perBuyerLimit: Int
    public var startsAt: Date
    public var endsAt: Date?
    public var paymentWindowSeconds: Int
    public var createdAt: Date
    public var stock: StockCounters
    /// Rate limits of order attempts of this sale, in place of the server's defaults.
    public var limits: SaleLimits

    public init(
        id: SaleID, sku: String, title: String, price: Money, perBuyerLimit: Int, startsAt: Date, endsAt: Date?,
        paymentWindowSeconds: Int, createdAt: Date, stock: StockCounters, limits: SaleLimits = .none
    ) {
        self.id = id
        self.sku = sku
        self.title = title
        self.price = price
        self.perBuyerLimit = perBuyerLimit
        self.startsAt = startsAt
        self.endsAt = endsAt
        self.paymentWindowSeconds = paymentWindowSeconds
        self.createdAt = createdAt
        self.stock = stock
        self.limits = limits
    }

    /// The phase at `now`: orders are taken from `startsAt` (inclusive) until `endsAt` (exclusive).
    public func phase(at now: Date) -> Phase {
        if now < startsAt { return .upcoming }
        if let endsAt, now >= endsAt { return .closed }
        return .open
    }

    /// When an order placed at `now` stops waiting for its payment.
    public func paymentDeadline(from now: Date) -> Date {
        now.addingTimeInterval(TimeInterval(paymentWindowSeconds))
    }
}
