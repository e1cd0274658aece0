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
    /// Present when the order needs an operator.
    var flag: FlagBody?
    /// Present once the order's payment was created at the provider.
    var payment: PaymentBody?

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
        flag = order.flag.map { FlagBody(reason: $0.reason, flaggedAt: Timestamp($0.flaggedAt)) }
        payment = order.payment.map { PaymentBody(id: $0.id, status: $0.status, payUrl: $0.payURL) }
    }
}

struct PaymentBody: Codable {
    var id: String
    var status: PaymentStatus
    /// Where the buyer pays.
    var payUrl: String?
}

struct FlagBody: Codable {
    var reason: OrderFlag.Reason
    var flaggedAt: Timestamp
}

/// A page of orders for operators.
struct OrderPageBody: Codable, ResponseEncodable {
    var orders: [OrderBody]
    var next: OrderID?
}

/// One outbox event of an order.
struct EventBody: Codable {
    var id: EventID
    var type: OrderEvent.Kind
    var orderId: OrderID
    var saleId: SaleID
    var sequence: Int
    var occurredAt: Timestamp

    init(_ event: OrderEvent) {
        id = event.id
        type = event.kind
        orderId = event.orderID
        saleId = event.saleID
        sequence = event.sequence
        occurredAt = Timestamp(event.occurredAt)
    }
}

struct EventListBody: Codable, ResponseEncodable {
    var events: [EventBody]
}

/// The answer to cancelling an attempt by its idempotency key.
struct AttemptCancellationBody: Codable, ResponseEncodable {
    var saleId: SaleID
    var idempotencyKey: String
    var cancelledAt: Timestamp
    /// The order the attempt had placed, now cancelled; absent when it had placed none.
    var order: OrderBody?

    init(_ cancellation: AttemptCancellation) {
        saleId = cancellation.saleID
        idempotencyKey = cancellation.idempotencyKey
        cancelledAt = Timestamp(cancellation.cancelledAt)
        order = cancellation.order.map(OrderBody.init)
    }
}
