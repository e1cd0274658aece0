import Foundation

/// What an operator asks for when creating a sale, checked against the limits below.
///
/// Validation collects every problem at once, so a client fixes its request in one round.
public struct SaleDraft: Sendable, Hashable {
    public static let stockRange: ClosedRange<Int64> = 1...1_000_000_000
    public static let perBuyerLimitRange: ClosedRange<Int> = 1...1_000
    /// Up to ten trillion minor units: large enough for any item, small enough that
    /// `price × perBuyerLimit` never overflows.
    public static let priceRange: ClosedRange<Int64> = 0...10_000_000_000_000
    public static let paymentWindowRange: ClosedRange<Int> = 1...86_400
    public static let skuMaxLength = 64
    public static let titleMaxLength = 200

    public var sku: String
    public var title: String
    public var price: Money
    public var stock: Int64
    public var perBuyerLimit: Int
    public var startsAt: Date?
    public var endsAt: Date?
    public var paymentWindowSeconds: Int
    public var limits: SaleLimits

    public init(
        sku: String, title: String, price: Money, stock: Int64, perBuyerLimit: Int = 1, startsAt: Date? = nil,
        endsAt: Date? = nil, paymentWindowSeconds: Int = 900, limits: SaleLimits = .none
    ) {
        self.sku = sku
        self.title = title
        self.price = price
        self.stock = stock
        self.perBuyerLimit = perBuyerLimit
        self.startsAt = startsAt
        self.endsAt = endsAt
        self.paymentWindowSeconds = paymentWindowSeconds
        self.limits = limits
    }

    /// Checks every field and returns the sale it describes, created at `now`.
    public func validated(id: SaleID, now: Date) throws(ValidationError) -> Sale {
        let now = now.wholeMilliseconds
        let endsAt = endsAt?.wholeMilliseconds
        var issues: [ValidationError.Issue] = []
        issues.append(contentsOf: TextRule(maxLength: Self.skuMaxLength).issues(sku, field: "sku"))
        issues.append(contentsOf: TextRule(maxLength: Self.titleMaxLength).issues(title, field: "title"))
        if !Self.priceRange.contains(price.amount) {
            issues.append(.init(field: "price.amount", message: "must be between 0 and \(Self.priceRange.upperBound)"))
        }
        if !Self.stockRange.contains(stock) {
            issues.append(.init(field: "stock", message: "must be between 1 and \(Self.stockRange.upperBound)"))
        }
        if !Self.perBuyerLimitRange.contains(perBuyerLimit) {
            issues.append(
                .init(field: "perBuyerLimit", message: "must be between 1 and \(Self.perBuyerLimitRange.upperBound)"))
        }
        if !Self.paymentWindowRange.contains(paymentWindowSeconds) {
            issues.append(
                .init(
                    field: "paymentWindowSeconds",
                    message: "must be between 1 and \(Self.paymentWindowRange.upperBound) seconds"))
        }
        issues.append(contentsOf: limits.issues())
        let start = startsAt?.wholeMilliseconds ?? now
        if let endsAt, endsAt <= start {
            issues.append(.init(field: "endsAt", message: "must be after startsAt"))
        }
        guard issues.isEmpty else { throw ValidationError(issues: issues) }
        return Sale(
            id: id, sku: sku, title: title, price: price, perBuyerLimit: perBuyerLimit, startsAt: start,
            endsAt: endsAt, paymentWindowSeconds: paymentWindowSeconds, createdAt: now,
            stock: StockCounters(total: stock), limits: limits)
    }
}
