import CrestCore
import Foundation
import PostgresNIO

/// Conversions between rows of the PostgreSQL store and domain values; the same encodings as the
/// embedded store's (`SQLiteRows`): times as integer milliseconds, ids as lower-case UUID strings.
enum PostgresRows {
    static let saleColumns = SQLiteRows.saleColumns
    static let orderColumns = SQLiteRows.orderColumns
    static let jobColumns = SQLiteRows.jobColumns
    static let eventColumns = SQLiteRows.eventColumns
    static let endpointColumns = "id, url, secret, event_types, created_at"

    static func millis(_ date: Date) -> Int64 { SQLiteRows.millis(date) }
    static func date(_ millis: Int64) -> Date { SQLiteRows.date(millis) }

    static func sale(_ row: PostgresRow) throws -> (sale: Sale, version: Int64) {
        let r = row.makeRandomAccess()
        let sale = Sale(
            id: try decode(SaleID(try r["id"].decode(String.self)), "sales.id"),
            sku: try r["sku"].decode(String.self),
            title: try r["title"].decode(String.self),
            price: Money(
                amount: try r["price_amount"].decode(Int64.self),
                currency: try currency(try r["currency"].decode(String.self))),
            perBuyerLimit: try r["per_buyer_limit"].decode(Int.self),
            startsAt: date(try r["starts_at"].decode(Int64.self)),
            endsAt: try r["ends_at"].decode(Int64?.self).map(date),
            paymentWindowSeconds: try r["payment_window_seconds"].decode(Int.self),
            createdAt: date(try r["created_at"].decode(Int64.self)),
            stock: try counters(r),
            limits: SaleLimits(storedJSON: try r["limits"].decode(String?.self)))
        return (sale, try r["version"].decode(Int64.self))
    }

    static func counters(_ r: PostgresRandomAccessRow) throws -> StockCounters {
        StockCounters(
            total: try r["total"].decode(Int64.self), available: try r["available"].decode(Int64.self),
            reserved: try r["reserved"].decode(Int64.self), sold: try r["sold"].decode(Int64.self))
    }

    static func snapshot(_ row: PostgresRow) throws -> CounterSnapshot {
        let r = row.makeRandomAccess()
        return CounterSnapshot(counters: try counters(r), version: try r["version"].decode(Int64.self))
    }

    static func order(_ row: PostgresRow) throws -> Order {
        let r = row.makeRandomAccess()
        let flag: OrderFlag? = try r["flag"].decode(String?.self).map {
            OrderFlag(
                reason: try decode(OrderFlag.Reason(rawValue: $0), "orders.flag"),
                flaggedAt: date(try r["flagged_at"].decode(Int64?.self) ?? 0))
        }
        let payment: OrderPayment? = try r["payment_id"].decode(String?.self).map {
            OrderPayment(
                id: $0,
                status: try decode(
                    PaymentStatus(rawValue: try r["payment_status"].decode(String?.self) ?? ""), "orders.payment_status"),
                payURL: try r["pay_url"].decode(String?.self))
        }
        return Order(
            id: try decode(OrderID(try r["id"].decode(String.self)), "orders.id"),
            saleID: try decode(SaleID(try r["sale_id"].decode(String.self)), "orders.sale_id"),
            buyer: try r["buyer"].decode(String.self),
            quantity: try r["quantity"].decode(Int.self),
            amount: Money(
                amount: try r["amount"].decode(Int64.self), currency: try currency(try r["currency"].decode(String.self))),
            status: try decode(Order.Status(rawValue: try r["status"].decode(String.self)), "orders.status"),
            createdAt: date(try r["created_at"].decode(Int64.self)),
            expiresAt: date(try r["expires_at"].decode(Int64.self)),
            updatedAt: date(try r["updated_at"].decode(Int64.self)),
            flag: flag,
            payment: payment)
    }

    static func job(_ row: PostgresRow) throws -> Job {
        let r = row.makeRandomAccess()
        return Job(
            id: JobID(try r["id"].decode(Int64.self)),
            kind: try r["kind"].decode(String.self),
            payload: try r["payload"].decode(String.self),
            state: try decode(Job.State(rawValue: try r["state"].decode(String.self)), "jobs.state"),
            attempt: try r["attempt"].decode(Int.self),
            maxAttempts: try r["max_attempts"].decode(Int.self),
            runAt: date(try r["run_at"].decode(Int64.self)),
            leaseUntil: try r["lease_until"].decode(Int64?.self).map(date),
            lastError: try r["last_error"].decode(String?.self),
            uniqueKey: try r["unique_key"].decode(String?.self),
            createdAt: date(try r["created_at"].decode(Int64.self)),
            attemptedAt: try r["attempted_at"].decode(Int64?.self).map(date),
            finalizedAt: try r["finalized_at"].decode(Int64?.self).map(date),
            traceParent: try r["trace_parent"].decode(String?.self))
    }

    static func endpoint(_ row: PostgresRow) throws -> WebhookEndpoint {
        let r = row.makeRandomAccess()
        let types = try r["event_types"].decode(String.self).split(separator: ",").compactMap {
            OrderEvent.Kind(rawValue: String($0))
        }
        return WebhookEndpoint(
            id: try decode(WebhookEndpointID(try r["id"].decode(String.self)), "webhook_endpoints.id"),
            url: try r["url"].decode(String.self), secret: try r["secret"].decode(String.self),
            eventTypes: Set(types), createdAt: date(try r["created_at"].decode(Int64.self)))
    }

    static func event(_ row: PostgresRow) throws -> OrderEvent {
        let r = row.makeRandomAccess()
        return OrderEvent(
            id: try decode(EventID(try r["id"].decode(String.self)), "order_events.id"),
            orderID: try decode(OrderID(try r["order_id"].decode(String.self)), "order_events.order_id"),
            saleID: try decode(SaleID(try r["sale_id"].decode(String.self)), "order_events.sale_id"),
            sequence: try r["sequence"].decode(Int.self),
            kind: try decode(OrderEvent.Kind(rawValue: try r["type"].decode(String.self)), "order_events.type"),
            occurredAt: date(try r["occurred_at"].decode(Int64.self)))
    }

    private static func currency(_ code: String) throws -> Currency { try SQLiteRows.currency(code) }

    private static func decode<T>(_ value: T?, _ column: String) throws -> T { try SQLiteRows.decode(value, column) }
}

extension PostgresRowSequence {
    /// Every row's single column, decoded.
    func values<T: PostgresDecodable & Sendable>(_ type: T.Type) async throws -> [T] {
        var values: [T] = []
        for try await value in decode(T.self) { values.append(value) }
        return values
    }
}
