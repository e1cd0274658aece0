import CrestCore
import Foundation
import GRDB

/// Conversions between rows of the embedded store and domain values. Times are stored as
/// integer milliseconds since 1970, ids as lower-case UUID strings.
enum SQLiteRows {
    static let saleColumns = """
        id, sku, title, price_amount, currency, per_buyer_limit, starts_at, ends_at, payment_window_seconds,
        created_at, total, available, reserved, sold, version, limits
        """
    static let orderColumns = """
        id, sale_id, buyer, quantity, amount, currency, status, created_at, expires_at, updated_at, flag, flagged_at,
        payment_id, payment_status, pay_url
        """
    static let jobColumns = """
        id, kind, payload, state, attempt, max_attempts, run_at, lease_until, last_error, unique_key, created_at,
        attempted_at, finalized_at, trace_parent
        """
    static let eventColumns = "id, order_id, sale_id, sequence, type, occurred_at"

    static func millis(_ date: Date) -> Int64 { date.millisecondsSince1970 }

    static func date(_ millis: Int64) -> Date { Date(timeIntervalSince1970: Double(millis) / 1000) }

    static func sale(_ row: Row) throws -> Sale {
        Sale(
            id: try decode(SaleID(row["id"] as String), "sales.id"),
            sku: row["sku"],
            title: row["title"],
            price: Money(amount: row["price_amount"], currency: try currency(row["currency"])),
            perBuyerLimit: row["per_buyer_limit"],
            startsAt: date(row["starts_at"]),
            endsAt: (row["ends_at"] as Int64?).map(date),
            paymentWindowSeconds: row["payment_window_seconds"],
            createdAt: date(row["created_at"]),
            stock: counters(row),
            limits: SaleLimits(storedJSON: row["limits"]))
    }

    static func counters(_ row: Row) -> StockCounters {
        StockCounters(total: row["total"], available: row["available"], reserved: row["reserved"], sold: row["sold"])
    }

    /// By position, in `orderColumns` order: every read of an order decodes one (GRDB's lookup
    /// by name lowercases each column's name).
    static func order(_ row: Row) throws -> Order {
        Order(
            id: try decode(OrderID(row[0] as String), "orders.id"),
            saleID: try decode(SaleID(row[1] as String), "orders.sale_id"),
            buyer: row[2],
            quantity: row[3],
            amount: Money(amount: row[4], currency: try currency(row[5])),
            status: try decode(Order.Status(rawValue: row[6]), "orders.status"),
            createdAt: date(row[7]),
            expiresAt: date(row[8]),
            updatedAt: date(row[9]),
            flag: try (row[10] as String?).map {
                OrderFlag(reason: try decode(OrderFlag.Reason(rawValue: $0), "orders.flag"), flaggedAt: date(row[11]))
            },
            payment: try (row[12] as String?).map {
                OrderPayment(
                    id: $0, status: try decode(PaymentStatus(rawValue: row[13]), "orders.payment_status"),
                    payURL: row[14])
            })
    }

    /// By position, in `jobColumns` order: claims decode every job they hand out.
    static func job(_ row: Row) throws -> Job {
        Job(
            id: JobID(row[0]),
            kind: row[1],
            payload: row[2],
            state: try decode(Job.State(rawValue: row[3]), "jobs.state"),
            attempt: row[4],
            maxAttempts: row[5],
            runAt: date(row[6]),
            leaseUntil: (row[7] as Int64?).map(date),
            lastError: row[8],
            uniqueKey: row[9],
            createdAt: date(row[10]),
            attemptedAt: (row[11] as Int64?).map(date),
            finalizedAt: (row[12] as Int64?).map(date),
            traceParent: row[13])
    }

    static func endpoint(_ row: Row) throws -> WebhookEndpoint {
        let types = (row["event_types"] as String).split(separator: ",").compactMap {
            OrderEvent.Kind(rawValue: String($0))
        }
        return WebhookEndpoint(
            id: try decode(WebhookEndpointID(row["id"] as String), "webhook_endpoints.id"), url: row["url"],
            secret: row["secret"], eventTypes: Set(types), createdAt: date(row["created_at"]))
    }

    static func event(_ row: Row) throws -> OrderEvent {
        OrderEvent(
            id: try decode(EventID(row["id"] as String), "order_events.id"),
            orderID: try decode(OrderID(row["order_id"] as String), "order_events.order_id"),
            saleID: try decode(SaleID(row["sale_id"] as String), "order_events.sale_id"),
            sequence: row["sequence"],
            kind: try decode(OrderEvent.Kind(rawValue: row["type"]), "order_events.type"),
            occurredAt: date(row["occurred_at"]))
    }

    /// Shared with `PostgresRows`: both stores keep values the same way.
    static func currency(_ code: String) throws -> Currency {
        try decode(Currency(code), "currency")
    }

    static func decode<T>(_ value: T?, _ column: String) throws -> T {
        guard let value else { throw CorruptRowError(column: column) }
        return value
    }
}

/// A stored value that the domain cannot read back: the database was changed outside Crest.
struct CorruptRowError: Error, CustomStringConvertible {
    var column: String
    var description: String { "unreadable value in \(column)" }
}
