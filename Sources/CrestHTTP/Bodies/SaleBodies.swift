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
    var limits: SaleLimits?

    var draft: SaleDraft {
        SaleDraft(
            sku: sku, title: title, price: price, stock: stock, perBuyerLimit: perBuyerLimit ?? 1, startsAt: startsAt,
            endsAt: endsAt, paymentWindowSeconds: paymentWindowSeconds ?? 900, limits: limits ?? .none)
    }
}

/// `PATCH /v1/sales/{saleID}` request body (JSON merge patch): `limits` replaces the sale's own
/// rate limits, `null` removes them. Nothing else of a sale changes once created.
struct UpdateSaleBody: Decodable {
    var limits: SaleLimits

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        let others = container.allKeys.map(\.stringValue).filter { $0 != "limits" }.sorted()
        guard others.isEmpty else {
            throw ValidationError(
                issues: others.map { .init(field: $0, message: "cannot be changed; only limits can") })
        }
        guard container.contains(Key(stringValue: "limits")) else {
            throw ValidationError(field: "limits", message: "is required (null removes the sale's own limits)")
        }
        limits = try container.decode(SaleLimits?.self, forKey: Key(stringValue: "limits")) ?? .none
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
    /// The sale's own rate limits; a scope absent follows the server's default.
    var limits: SaleLimits

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
        limits = sale.limits
    }
}

/// A page of sales; `next` is the `after` value of the following page, absent on the last.
struct SalePageBody: Codable, ResponseEncodable {
    var sales: [SaleBody]
    var next: SaleID?
}
