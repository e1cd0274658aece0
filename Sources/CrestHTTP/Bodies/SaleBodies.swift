import CrestCore
import Foundation
import Hummingbird

/// `POST /v1/sales` request body.
struct CreateSaleBody: Decodable {
    var sku: String
    var title: String
    var price: Money
    var stock: Int64
    var perBuyerLimit: Int?
    var startsAt: Date?
    var endsAt: Date?
    var paymentWindowSeconds: Int?

    var draft: SaleDraft {
        SaleDraft(
            sku: sku, title: title, price: price, stock: stock, perBuyerLimit: perBuyerLimit ?? 1, startsAt: startsAt,
            endsAt: endsAt, paymentWindowSeconds: paymentWindowSeconds ?? 900)
    }
}

/// A sale as the API shows it, with its live stock counters.
struct SaleBody: Codable, ResponseEncodable {
    var id: SaleID
    var sku: String
    var title: String
    var price: Money
    var perBuyerLimit: Int
    var startsAt: Timestamp
    var endsAt: Timestamp?
    var paymentWindowSeconds: Int
    var createdAt: Timestamp
    var stock: StockCounters

    init(_ sale: Sale) {
        id = sale.id
        sku = sale.sku
        title = sale.title
        price = sale.price
        perBuyerLimit = sale.perBuyerLimit
        startsAt = Timestamp(sale.startsAt)
        endsAt = sale.endsAt.map(Timestamp.init)
        paymentWindowSeconds = sale.paymentWindowSeconds
        createdAt = Timestamp(sale.createdAt)
        stock = sale.stock
    }
}

/// A page of sales; `next` is the `after` value of the following page, absent on the last.
struct SalePageBody: Codable, ResponseEncodable {
    var sales: [SaleBody]
    var next: SaleID?
}
