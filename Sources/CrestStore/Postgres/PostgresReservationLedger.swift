import CrestCore
import Foundation
import Logging
import NIOCore
import PostgresNIO

/// Decides one batch of reservations inside its transaction, set-based: a few queries read
/// everything the batch's decisions need (its sales' rows, locked; the keys already used; the
/// attempts cancelled; what each buyer holds), the decisions are made in memory, and a few
/// statements write the outcome (`INSERT … SELECT FROM UNNEST(…)` of the orders, their events,
/// deliveries and jobs; one conditional `UPDATE` of the counters per sale). The statements travel
/// in two pipelines, `BEGIN` with the reads and the writes, then `COMMIT` (see `run`).
///
/// The same checks as the embedded store, in the same order: the sale exists and is open at the
/// request's time, the key is new, the attempt was not cancelled, the buyer stays within the
/// limit, the stock suffices.
struct PostgresReservationLedger {
    private struct SaleState {
        var sale: Sale
        var version: Int64
        var granted: Int64 = 0
    }

    private struct Key: Hashable {
        var sale: SaleID
        var key: String
    }

    /// A cancelled-attempt record: the key, and the buyer whose attempt it refuses
    /// (`StoreRules.anyBuyer`: everyone's).
    private struct CancelledKey: Hashable {
        var key: Key
        var buyer: String
    }

    private struct Holder: Hashable {
        var sale: SaleID
        var buyer: String
    }

    private var sales: [SaleID: SaleState] = [:]
    private var placed: [Key: Order] = [:]
    private var cancelled: Set<CancelledKey> = []
    private var holdings: [Holder: Int] = [:]
    private let endpoints: [WebhookEndpoint]
    private var created: [(order: Order, key: String, reservation: Reservation)] = []

    /// Runs `batch` as one transaction on `connection` and returns each reservation's outcome and
    /// the counters of every sale read.
    ///
    /// `BEGIN` and every read travel in one pipeline (see `PostgresPipeline`); the sales' rows are
    /// locked first, so the reads after it see every batch committed before this one took its
    /// turn. The decisions are made and the writes sent in a second pipeline, and then `COMMIT`,
    /// on the connection's event loop the moment the answers are in: the sales' rows stay locked
    /// for the server's time only, not also for trips through a task (other nodes wait for them).
    static func run(_ batch: [Reservation], on connection: PostgresConnection, logger: Logger)
        -> EventLoopFuture<ReservationBatchResult>
    {
        var reads = PostgresPipeline(on: connection, logger: logger)
        reads.send("BEGIN")
        let endpoints = reads.send(PostgresEvents.activeEndpointsQuery)
        let saleIDs = Set(batch.map(\.request.saleID)).sorted()
        // The lock that makes nodes take turns on a sale: held until this batch commits.
        let locked = reads.send(
            """
            SELECT \(unescaped: PostgresRows.saleColumns) FROM sales WHERE id = ANY(\(saleIDs.map(\.description)))
            ORDER BY id FOR UPDATE
            """)
        var lookups: [Lookup] = []
        for saleID in saleIDs {
            let requests = batch.map(\.request).filter { $0.saleID == saleID }
            let keys = Array(Set(requests.map(\.idempotencyKey)))
            let buyers = Array(Set(requests.map(\.buyer)))
            let sale = saleID.description
            let placed = reads.send(
                """
                SELECT \(unescaped: PostgresRows.orderColumns), idempotency_key FROM orders
                WHERE sale_id = \(sale) AND idempotency_key = ANY(\(keys))
                """)
            let cancelled = reads.send(
                """
                SELECT idempotency_key, buyer FROM cancelled_attempts
                WHERE sale_id = \(sale) AND idempotency_key = ANY(\(keys))
                """)
            let holdings = reads.send(
                """
                SELECT buyer, SUM(quantity)::bigint FROM orders
                WHERE sale_id = \(sale) AND buyer = ANY(\(buyers)) AND status IN \(unescaped: StoreRules.liveStatusesSQL)
                GROUP BY buyer
                """)
            lookups.append(Lookup(sale: saleID, placed: placed, cancelled: cancelled, holdings: holdings))
        }
        return reads.answers().flatMap { [lookups] rows in
            do {
                var ledger = try Self(rows: rows, endpoints: endpoints, locked: locked, lookups: lookups)
                let outcomes = batch.map { ledger.decide($0) }
                return ledger.save(on: connection, logger: logger).map {
                    ReservationBatchResult(outcomes: outcomes, counters: $0)
                }
            } catch {
                return connection.eventLoop.makeFailedFuture(error)
            }
        }
    }

    /// Where a sale's lookups are among the reads' answers.
    private struct Lookup {
        var sale: SaleID
        var placed: Int
        var cancelled: Int
        var holdings: Int
    }

    private init(rows: [[PostgresRow]], endpoints: Int, locked: Int, lookups: [Lookup]) throws {
        self.endpoints = try rows[endpoints].map(PostgresRows.endpoint)
        for row in rows[locked] {
            let (sale, version) = try PostgresRows.sale(row)
            // Pair of the table's CHECKs: what was read back is conserved.
            precondition(sale.stock.isConserved, "sale \(sale.id) read back not conserved: \(sale.stock)")
            sales[sale.id] = SaleState(sale: sale, version: version)
        }
        for lookup in lookups {
            for row in rows[lookup.placed] {
                let key = try row.makeRandomAccess()["idempotency_key"].decode(String.self)
                placed[Key(sale: lookup.sale, key: key)] = try PostgresRows.order(row)
            }
            for row in rows[lookup.cancelled] {
                let (key, buyer) = try row.decode((String, String).self)
                cancelled.insert(CancelledKey(key: Key(sale: lookup.sale, key: key), buyer: buyer))
            }
            for row in rows[lookup.holdings] {
                let (buyer, held) = try row.decode((String, Int64).self)
                holdings[Holder(sale: lookup.sale, buyer: buyer)] = Int(held)
            }
        }
    }

    mutating func decide(_ reservation: Reservation) -> ReservationOutcome {
        let request = reservation.request
        guard var state = sales[request.saleID] else { return .refused(.saleNotFound) }
        let key = Key(sale: request.saleID, key: request.idempotencyKey)
        let holder = Holder(sale: request.saleID, buyer: request.buyer)
        let held = holdings[holder] ?? 0
        if let outcome = StoreRules.decide(
            reservation, sale: state.sale, existing: { placed[key] },
            cancelled: {
                cancelled.contains(CancelledKey(key: key, buyer: StoreRules.anyBuyer))
                    || cancelled.contains(CancelledKey(key: key, buyer: request.buyer))
            }, held: { held })
        {
            return outcome
        }
        let quantity = Int64(request.quantity)
        let order = reservation.pendingOrder
        state.sale.stock.available -= quantity
        state.sale.stock.reserved += quantity
        assert(state.sale.stock.isConserved, "a grant left sale \(request.saleID) not conserved: \(state.sale.stock)")
        state.granted += quantity
        sales[request.saleID] = state
        holdings[holder] = held + request.quantity
        placed[key] = order
        created.append((order, request.idempotencyKey, reservation))
        return .reserved(order)
    }

    /// Writes the batch's orders, events, deliveries and jobs, and each sale's counters (every
    /// statement in one pipeline), and commits. Returns the counters of every sale read.
    private func save(on connection: PostgresConnection, logger: Logger) -> EventLoopFuture<[SaleID: CounterSnapshot]> {
        var writes = PostgresPipeline(on: connection, logger: logger)
        if !created.isEmpty {
            insertOrders(into: &writes)
            insertEvents(into: &writes)
        }
        var snapshots: [SaleID: CounterSnapshot] = [:]
        var updates: [(sale: SaleID, counters: StockCounters, statement: Int)] = []
        for (saleID, state) in sales.sorted(by: { $0.key < $1.key }) {
            // Checked before the write, as the table's CHECKs will after it.
            precondition(state.sale.stock.isConserved, "sale \(saleID) about to be written not conserved")
            guard state.granted > 0 else {
                snapshots[saleID] = CounterSnapshot(counters: state.sale.stock, version: state.version)
                continue
            }
            // The row is locked, so the condition holds; it is the guard should it ever not.
            let statement = writes.send(
                """
                UPDATE sales SET available = available - \(state.granted), reserved = reserved + \(state.granted),
                    version = version + 1
                WHERE id = \(saleID.description) AND available >= \(state.granted) RETURNING version
                """)
            updates.append((saleID, state.sale.stock, statement))
        }
        // `COMMIT` goes only once every conditional decrement matched its row, sent from the
        // connection's event loop as soon as the answers are in.
        return writes.answers().flatMap { [snapshots, updates] rows in
            var snapshots = snapshots
            do {
                for update in updates {
                    guard let version = try rows[update.statement].first?.decode(Int64.self) else {
                        throw CorruptRowError(column: "sales.available")
                    }
                    snapshots[update.sale] = CounterSnapshot(counters: update.counters, version: version)
                }
            } catch {
                return connection.eventLoop.makeFailedFuture(error)
            }
            var commit = PostgresPipeline(on: connection, logger: logger)
            commit.send("COMMIT")
            return commit.answers().map { [snapshots] _ in snapshots }
        }
    }

    private func insertOrders(into writes: inout PostgresPipeline) {
        let orders = created.map(\.order)
        writes.send(
            """
            INSERT INTO orders (
                id, sale_id, buyer, quantity, amount, currency, status, created_at, expires_at, updated_at,
                idempotency_key)
            SELECT * FROM UNNEST(
                \(orders.map(\.id.description))::text[], \(orders.map(\.saleID.description))::text[],
                \(orders.map(\.buyer))::text[], \(orders.map { Int64($0.quantity) })::int[],
                \(orders.map(\.amount.amount))::bigint[], \(orders.map(\.amount.currency.code))::text[],
                \(orders.map(\.status.rawValue))::text[], \(orders.map { PostgresRows.millis($0.createdAt) })::bigint[],
                \(orders.map { PostgresRows.millis($0.expiresAt) })::bigint[],
                \(orders.map { PostgresRows.millis($0.updatedAt) })::bigint[], \(created.map(\.key))::text[])
            """)
    }

    /// Each order's `order.created` event; for each endpoint that wants it, a delivery row; and
    /// the jobs: the reservations' own (payment), one per delivery, and the batch's expiries
    /// (`OrderJobs.expiries`).
    private func insertEvents(into writes: inout PostgresPipeline) {
        let orders = created.map(\.order)
        writes.send(
            """
            INSERT INTO order_events (\(unescaped: PostgresRows.eventColumns))
            SELECT id, order_id, sale_id, 1, 'order.created', occurred_at FROM UNNEST(
                \(orders.map { EventID.make(now: $0.createdAt).description })::text[],
                \(orders.map(\.id.description))::text[], \(orders.map(\.saleID.description))::text[],
                \(orders.map { PostgresRows.millis($0.createdAt) })::bigint[]
            ) AS e(id, order_id, sale_id, occurred_at)
            """)
        var jobs: [(job: NewJob, at: Date)] = created.flatMap { created in
            created.reservation.jobs.map { ($0, created.order.createdAt) }
        }
        if let first = orders.first {
            let paying = created.lazy.filter(\.reservation.createsPayment).map {
                (id: $0.order.id, traceParent: $0.reservation.traceParent)
            }
            jobs += (OrderJobs.expiries(of: orders.lazy.map { ($0.id, $0.expiresAt) }) + PaymentJobs.creations(of: paying))
                .map { ($0, first.createdAt) }
        }
        let listening = endpoints.filter { $0.wants(.created) }
        if !listening.isEmpty {
            var deliveries: [WebhookJobs.Delivery] = []
            for order in orders {
                for endpoint in listening {
                    let delivery = WebhookJobs.Delivery(endpointId: endpoint.id, orderId: order.id, sequence: 1)
                    deliveries.append(delivery)
                    jobs.append((WebhookJobs.delivery(delivery), order.createdAt))
                }
            }
            writes.send(
                """
                INSERT INTO webhook_deliveries (endpoint_id, order_id, sequence)
                SELECT endpoint_id, order_id, 1 FROM UNNEST(
                    \(deliveries.map(\.endpointId.description))::text[], \(deliveries.map(\.orderId.description))::text[]
                ) AS d(endpoint_id, order_id)
                """)
        }
        guard !jobs.isEmpty else { return }
        // The announcement to the other nodes rides on the insert: no extra round trip per batch.
        writes.send(
            """
            WITH inserted AS (
            INSERT INTO jobs (kind, payload, state, max_attempts, run_at, unique_key, created_at, trace_parent)
            SELECT kind, payload, CASE WHEN run_at > created_at THEN 'scheduled' ELSE 'available' END, max_attempts,
                run_at, NULLIF(unique_key, ''), created_at, NULLIF(trace_parent, '')
            FROM UNNEST(
                \(jobs.map(\.job.kind))::text[], \(jobs.map(\.job.payload))::text[],
                \(jobs.map { Int64($0.job.maxAttempts) })::int[],
                \(jobs.map { PostgresRows.millis($0.job.runAt ?? $0.at) })::bigint[],
                \(jobs.map { $0.job.uniqueKey ?? "" })::text[], \(jobs.map { PostgresRows.millis($0.at) })::bigint[],
                \(jobs.map { $0.job.traceParent ?? "" })::text[]
            ) AS j(kind, payload, max_attempts, run_at, unique_key, created_at, trace_parent)
            ON CONFLICT DO NOTHING
            RETURNING GREATEST(run_at, created_at) AS due)
            SELECT pg_notify(\(PostgresNotices.channel), 'jobs:' || MIN(due)) FROM inserted HAVING COUNT(*) > 0
            """)
    }
}
