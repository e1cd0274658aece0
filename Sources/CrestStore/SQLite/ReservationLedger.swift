import CrestCore
import Foundation
import GRDB

/// Decides the reservations of one batch inside the writer's transaction and writes the result:
/// the counters of each sale are read once, decided on in memory, and written back once.
///
/// Each reservation is checked, in order, against: the sale existing and open at the request's
/// time, its idempotency key being new, the buyer's live holdings plus the quantity staying
/// within the limit, and enough stock being available.
struct ReservationLedger {
    private struct SaleState {
        var sale: Sale
        var version: Int64
        var changed = false
    }

    private let db: Database
    private var sales: [SaleID: SaleState] = [:]
    /// Units each buyer holds in each sale, read on first use and kept up to date in this batch.
    private var holdings: [SaleID: [String: Int]] = [:]
    /// Read once per batch: each created order's event goes to every endpoint that wants it.
    private let endpoints: [WebhookEndpoint]

    init(db: Database, saleIDs: Set<SaleID>) throws {
        self.db = db
        endpoints = try SQLiteEvents.activeEndpoints(db)
        for saleID in saleIDs {
            if let row = try Row.fetchOne(
                db, sql: "SELECT \(SQLiteRows.saleColumns) FROM sales WHERE id = ?", arguments: [saleID.description])
            {
                sales[saleID] = SaleState(sale: try SQLiteRows.sale(row), version: row["version"])
            }
        }
    }

    mutating func decide(_ reservation: Reservation) throws -> ReservationOutcome {
        let request = reservation.request
        guard var state = sales[request.saleID] else { return .refused(.saleNotFound) }
        var held = 0
        if let outcome = try StoreRules.decide(
            reservation, sale: state.sale,
            existing: {
                try SQLiteStore.fetchOrder(db, saleID: request.saleID, idempotencyKey: request.idempotencyKey)
            },
            cancelled: {
                try SQLiteStore.attemptWasCancelled(db, saleID: request.saleID, idempotencyKey: request.idempotencyKey)
            },
            held: {
                held = try heldUnits(saleID: request.saleID, buyer: request.buyer)
                return held
            })
        {
            return outcome
        }
        let quantity = Int64(request.quantity)
        let order = reservation.pendingOrder
        let insert = try db.cachedStatement(
            sql: """
                INSERT INTO orders (
                    id, sale_id, buyer, quantity, amount, currency, status, created_at, expires_at, updated_at,
                    idempotency_key)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
        try insert.execute(arguments: [
            order.id.description, order.saleID.description, order.buyer, order.quantity, order.amount.amount,
            order.amount.currency.code, order.status.rawValue, SQLiteRows.millis(order.createdAt),
            SQLiteRows.millis(order.expiresAt), SQLiteRows.millis(order.updatedAt), request.idempotencyKey,
        ])
        try SQLiteEvents.append(db, .created, of: order, sequence: 1, at: order.createdAt, endpoints: endpoints)
        for job in reservation.jobs {
            _ = try SQLiteJobs.insert(db, job, at: reservation.createdAt)
        }
        state.sale.stock.available -= quantity
        state.sale.stock.reserved += quantity
        state.changed = true
        sales[request.saleID] = state
        holdings[request.saleID, default: [:]][request.buyer] = held + request.quantity
        return .reserved(order)
    }

    /// Writes the counters of every sale that changed; returns the counters of every sale read.
    func save() throws -> [SaleID: CounterSnapshot] {
        var snapshots: [SaleID: CounterSnapshot] = [:]
        for (saleID, state) in sales {
            var version = state.version
            if state.changed {
                version += 1
                try db.execute(
                    sql: "UPDATE sales SET available = ?, reserved = ?, version = ? WHERE id = ?",
                    arguments: [state.sale.stock.available, state.sale.stock.reserved, version, saleID.description])
            }
            snapshots[saleID] = CounterSnapshot(counters: state.sale.stock, version: version)
        }
        return snapshots
    }

    private mutating func heldUnits(saleID: SaleID, buyer: String) throws -> Int {
        if let held = holdings[saleID]?[buyer] { return held }
        let held =
            try Int.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT COALESCE(SUM(quantity), 0) FROM orders
                        WHERE sale_id = ? AND buyer = ? AND status IN ('pending_payment', 'paid')
                        """),
                arguments: [saleID.description, buyer]) ?? 0
        holdings[saleID, default: [:]][buyer] = held
        return held
    }
}
