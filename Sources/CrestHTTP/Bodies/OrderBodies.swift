import CrestCore
import Foundation
import Hummingbird

/// `POST /v1/sales/{id}/orders` request body. `buyer` may be left out when the request carries a
/// buyer pass (its subject is the buyer); without passes (`--buyer-auth off`) it is required.
struct PlaceOrderBody: Decodable {
    var buyer: String?
    var quantity: Int
}

extension PlaceOrderBody {
    /// Reads the shape nearly every buyer sends — `{"buyer": "…", "quantity": n}` or
    /// `{"quantity": n}`, members in either order, any whitespace, a buyer of printable ASCII without
    /// escapes, a quantity of at most nine digits — with `PlainJSON`, not `JSONDecoder`, which cost
    /// more than the stock gate. `nil` for anything else (escapes, other members, duplicates, signs,
    /// fractions, broken JSON): that goes to `JSONDecoder`, which has the full rules and the error
    /// messages.
    init?(plainJSON buffer: ByteBuffer) {
        let parsed: (String?, Int)? = buffer.withUnsafeReadableBytes { bytes in
            var json = PlainJSON(bytes)
            var buyer: String?
            var quantity: Int?
            let plain = json.object { name, json in
                if name.elementsEqual("buyer".utf8), buyer == nil {
                    buyer = json.text()
                    return buyer != nil
                } else if name.elementsEqual("quantity".utf8), quantity == nil {
                    quantity = json.integer(maxDigits: 9)
                    return quantity != nil
                }
                return false
            }
            guard plain, json.isAtEnd, let quantity else { return nil }
            return (buyer, quantity)
        }
        guard let (buyer, quantity) = parsed else { return nil }
        self.init(buyer: buyer, quantity: quantity)
    }
}

/// An order as the API shows it.
///
/// As a response it is written by hand (`JSONObjectWriter`); inside lists it goes through
/// `Codable`. A test holds the two to the same JSON.
struct OrderBody: Codable, ResponseGenerator {
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

extension OrderBody {
    static let contentType = "application/json; charset=utf-8"

    func response(from request: Request, context: some RequestContext) throws -> Response {
        Response(status: .ok, json: JSONObjectWriter.object(write), contentType: Self.contentType)
    }

    /// The members, in the order `Codable` writes them.
    func write(_ json: inout JSONObjectWriter) {
        json.member("id", id.description)
        json.member("saleId", saleId.description)
        json.member("buyer", buyer)
        json.member("quantity", quantity)
        json.member("amount") { money in
            money.member("amount", amount.amount)
            money.member("currency", amount.currency.code)
        }
        json.member("status", status.rawValue)
        json.member("createdAt", createdAt.text)
        json.member("expiresAt", expiresAt.text)
        json.member("updatedAt", updatedAt.text)
        if let flag {
            json.member("flag") { body in
                body.member("reason", flag.reason.rawValue)
                body.member("flaggedAt", flag.flaggedAt.text)
            }
        }
        if let payment {
            json.member("payment") { body in
                body.member("id", payment.id)
                body.member("status", payment.status.rawValue)
                body.member("payUrl", payment.payUrl)
            }
        }
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
struct OrderPageBody: Codable, ResponseGenerator {
    var orders: [OrderBody]
    var next: OrderID?

    /// Written by hand as the order is: with `JSONEncoder` a page of 200 cost the server ~17 ms of
    /// CPU (84 µs an order, against ~150 µs for a whole `GET` of one), which a listing of a sale's
    /// orders (an operator's, the load test's audit) paid for every page (Benchmarks/RESULTS.md).
    func response(from request: Request, context: some RequestContext) throws -> Response {
        Response(status: .ok, json: body, contentType: OrderBody.contentType)
    }

    var body: ByteBuffer {
        JSONObjectWriter.object(capacity: 64 + 480 * orders.count) { json in
            json.member("orders", array: orders) { json, order in order.write(&json) }
            json.member("next", next?.description)
        }
    }
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
