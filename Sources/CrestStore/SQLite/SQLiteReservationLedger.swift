import CrestCore
import Foundation
import GRDB

/// Decides the reservations of one batch inside the writer's transaction and writes the result:
/// the counters of each sale are read once, decided on in memory, and written back once.
///
/// Each reservation is checked, in order, against: the sale existing and open at the request's
/// time, its idempotency key being new (and not cancelled), the buyer's live holdings plus the
/// quantity staying within the limit, and enough stock being available.
struct SQLiteReservationLedger {
    private struct SaleState {
        var sale: Sale
        var version: Int64
        var changed = false
    }

    private let db: Database
    private var sales: [SaleID: SaleState] = [:]
    /// Read once per batch: each created order's event goes to every endpoint that wants it.
    private let endpoints: [WebhookEndpoint]
    /// The orders created so far, for the batch's expiry jobs (`OrderJobs.expiries`).
    private var created: [(id: OrderID, expiresAt: Date, createdAt: Date)] = []
    /// Those whose payment is to be created, for the batch's creation jobs (`PaymentJobs.creations`).
    private var paying: [(id: OrderID, traceParent: String?)] = []

    init(db: Database, saleIDs: Set<SaleID>) throws {
        self.db = db
        endpoints = try SQLiteEvents.activeEndpoints(db)
        for saleID in saleIDs {
            if let row = try Row.fetchOne(
                db.cachedStatement(sql: "SELECT \(SQLiteRows.saleColumns) FROM sales WHERE id = ?"),
                arguments: [saleID.description])
            {
                let sale = try SQLiteRows.sale(row)
                // Pair of the table's CHECKs: what was read back is conserved.
                precondition(sale.stock.isConserved, "sale \(saleID) read back not conserved: \(sale.stock)")
                sales[saleID] = SaleState(sale: sale, version: row["version"])
            }
        }
    }

    mutating func decide(_ reservation: Reservation) throws -> ReservationOutcome {
        let request = reservation.request
        guard var state = sales[request.saleID] else { return .refused(.saleNotFound) }
        let known = try probe(request)
        if let outcome = try StoreRules.decide(
            reservation, sale: state.sale,
            existing: {
                guard known.placed else { return nil }
                return try SQLiteStore.fetchOrder(db, saleID: request.saleID, idempotencyKey: request.idempotencyKey)
            },
            cancelled: { known.cancelled },
            held: { known.held })
        {
            return outcome
        }
        let quantity = Int64(request.quantity)
        let order = reservation.pendingOrder
        try DirectStatement(db, sql: Self.insertSQL).execute(
            order.id.description, order.saleID.description, order.buyer, order.quantity, order.amount.amount,
            order.amount.currency.code, order.status.rawValue, SQLiteRows.millis(order.createdAt),
            SQLiteRows.millis(order.expiresAt), SQLiteRows.millis(order.updatedAt), request.idempotencyKey)
        try SQLiteEvents.append(db, .created, of: order, sequence: 1, at: order.createdAt, endpoints: endpoints)
        for job in reservation.jobs {
            _ = try SQLiteJobs.insert(db, job, at: reservation.createdAt)
        }
        created.append((order.id, order.expiresAt, order.createdAt))
        if reservation.createsPayment { paying.append((order.id, reservation.traceParent)) }
        state.sale.stock.available -= quantity
        state.sale.stock.reserved += quantity
        assert(state.sale.stock.isConserved, "a grant left sale \(request.saleID) not conserved: \(state.sale.stock)")
        state.changed = true
        sales[request.saleID] = state
        return .reserved(order)
    }

    /// Writes the batch's expiry and payment creation jobs and the counters of every sale that
    /// changed; returns the counters of every sale read.
    func save() throws -> [SaleID: CounterSnapshot] {
        if let first = created.first {
            for job in OrderJobs.expiries(of: created.lazy.map { ($0.id, $0.expiresAt) }) + PaymentJobs.creations(of: paying) {
                _ = try SQLiteJobs.insert(db, job, at: first.createdAt)
            }
        }
        var snapshots: [SaleID: CounterSnapshot] = [:]
        for (saleID, state) in sales {
            var version = state.version
            // Checked before the write, as the table's CHECKs will after it.
            precondition(state.sale.stock.isConserved, "sale \(saleID) about to be written not conserved")
            if state.changed {
                version += 1
                try DirectStatement(db, sql: "UPDATE sales SET available = ?, reserved = ?, version = ? WHERE id = ?")
                    .execute(state.sale.stock.available, state.sale.stock.reserved, version, saleID.description)
            }
            snapshots[saleID] = CounterSnapshot(counters: state.sale.stock, version: version)
        }
        return snapshots
    }

    static let insertSQL = """
        INSERT INTO orders (
            id, sale_id, buyer, quantity, amount, currency, status, created_at, expires_at, updated_at,
            idempotency_key)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """

    /// The probe's statement, built once (it is looked up in the statement cache by its text). The
    /// cancelled-attempt lookup is two seeks: `buyer IN ('', ?3)` on the key's last column built a
    /// temporary B-tree of the two values each time the statement ran.
    static let probeSQL = """
        SELECT
            EXISTS (SELECT 1 FROM orders WHERE sale_id = ?1 AND idempotency_key = ?2),
            EXISTS (SELECT 1 FROM cancelled_attempts
                    WHERE sale_id = ?1 AND idempotency_key = ?2 AND buyer = '\(StoreRules.anyBuyer)')
            OR EXISTS (SELECT 1 FROM cancelled_attempts WHERE sale_id = ?1 AND idempotency_key = ?2 AND buyer = ?3),
            (SELECT COALESCE(SUM(quantity), 0) FROM orders
             WHERE sale_id = ?1 AND buyer = ?3 AND status IN \(StoreRules.liveStatusesSQL))
        """

    /// What the store knows of the request's key and buyer, in one statement: whether the key
    /// placed an order or was cancelled, and the units the buyer holds in live orders (this
    /// batch's inserts included — they are in the same transaction). As three statements the
    /// statement overhead cost more than the three index lookups.
    private func probe(_ request: OrderRequest) throws -> (placed: Bool, cancelled: Bool, held: Int) {
        let known = try DirectStatement(db, sql: Self.probeSQL).firstRow(
            request.saleID.description, request.idempotencyKey, request.buyer
        ) { row in (placed: row.bool(0), cancelled: row.bool(1), held: Int(row.int64(2))) }
        guard let known else { throw CorruptRowError(column: "probe") }
        return known
    }
}
