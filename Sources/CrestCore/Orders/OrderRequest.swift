/// A buyer's attempt to order from a sale, with the idempotency key that names the attempt.
///
/// The key is scoped to the sale: the same key sent to another sale is another attempt. Two attempts
/// with the same key are "the same request" when buyer and quantity agree (`sameBody`).
public struct OrderRequest: Sendable, Hashable {
    public static let idempotencyKeyMaxLength = 255
    public static let buyerMaxLength = 128

    public var saleID: SaleID
    public var idempotencyKey: String
    public var buyer: String
    public var quantity: Int
    /// Replaces the sale's per-buyer limit for this buyer: the limit the shop signed into the
    /// buyer's pass. `nil`: the sale's.
    public var perBuyerLimit: Int?

    public init(saleID: SaleID, idempotencyKey: String, buyer: String, quantity: Int, perBuyerLimit: Int? = nil) {
        self.saleID = saleID
        self.idempotencyKey = idempotencyKey
        self.buyer = buyer
        self.quantity = quantity
        self.perBuyerLimit = perBuyerLimit
    }

    /// The most units this buyer may hold in `sale`.
    public func limit(in sale: Sale) -> Int { perBuyerLimit ?? sale.perBuyerLimit }

    /// Checks what can be checked without the sale: the key, the buyer id, a positive quantity.
    public func validate() throws(ValidationError) {
        var issues = Self.keyIssues(idempotencyKey)
        issues.append(contentsOf: TextRule(maxLength: Self.buyerMaxLength).issues(buyer, field: "buyer"))
        if quantity < 1 {
            issues.append(.init(field: "quantity", message: "must be at least 1"))
        }
        if let perBuyerLimit, !SaleDraft.perBuyerLimitRange.contains(perBuyerLimit) {
            issues.append(
                .init(
                    field: "perBuyerLimit",
                    message: "must be between 1 and \(SaleDraft.perBuyerLimitRange.upperBound)"))
        }
        guard issues.isEmpty else { throw ValidationError(issues: issues) }
    }

    /// Checks an idempotency key on its own (e.g. to cancel the attempt it names).
    public static func validateKey(_ key: String) throws(ValidationError) {
        let issues = keyIssues(key)
        guard issues.isEmpty else { throw ValidationError(issues: issues) }
    }

    private static func keyIssues(_ key: String) -> [ValidationError.Issue] {
        guard key.isEmpty || key.utf8.count > idempotencyKeyMaxLength || !key.utf8.allSatisfy({ $0 >= 0x21 && $0 <= 0x7E })
        else { return [] }
        return [.init(field: "Idempotency-Key", message: "must be 1 to \(idempotencyKeyMaxLength) visible ASCII characters")]
    }

    /// Whether `buyer` and `quantity` are those of this request.
    public func sameBody(buyer: String, quantity: Int) -> Bool {
        self.buyer == buyer && self.quantity == quantity
    }
}
