import CrestCore
import Foundation
import Hummingbird

/// `POST /v1/sales/{id}/orders` request body.
struct PlaceOrderBody: Decodable {
    var buyer: String
    var quantity: Int
}

/// An order as the API shows it.
struct OrderBody: Codable, ResponseEncodable {
    var id: OrderID
    var saleId: SaleID
    var buyer: String
    var quantity: Int
    var amount: Money
    var status: Order.Status
    var createdAt: Timestamp
    var expiresAt: Timestamp
    var updatedAt: Timestamp

    init(_ order: Order) {
        id = order.id
        saleId = order.saleID
        buyer = order.buyer
        quantity = order.quantity
        amount = order.amount
        status = order.status
        createdAt = Timestamp(order.createdAt)
        expiresAt = Timestamp(order.expiresAt)
        updatedAt = Timestamp(order.updatedAt)
    }
}
