import Foundation

/// A buyer's claim on stock of one sale, from reservation to a final state.
public struct Order: Sendable, Hashable {
    public var id: OrderID
    public var saleID: SaleID
    public var buyer: String
    public var quantity: Int
    public var amount: Money
    public var status: Status
    public var createdAt: Date
    public var expiresAt: Date
    public var updatedAt: Date
    /// Set when something about the order needs an operator.
    public var flag: OrderFlag?
    /// The order's payment at the provider, once one was created.
    public var payment: OrderPayment?

    public init(
        id: OrderID, saleID: SaleID, buyer: String, quantity: Int, amount: Money, status: Status, createdAt: Date,
        expiresAt: Date, updatedAt: Date, flag: OrderFlag? = nil, payment: OrderPayment? = nil
    ) {
        self.id = id
        self.saleID = saleID
        self.buyer = buyer
        self.quantity = quantity
        self.amount = amount
        self.status = status
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.updatedAt = updatedAt
        self.flag = flag
        self.payment = payment
    }
}
