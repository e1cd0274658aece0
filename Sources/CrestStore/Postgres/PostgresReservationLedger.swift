import CrestCore
import Foundation
import Logging
import NIOCore
import PostgresNIO

/// Decides one batch of reservations inside its transaction, set-based: two queries read
/// everything the batch's decisions need (its sales' rows, locked; then, one row per request, the
/// order its key placed, whether its attempt was cancelled and what its buyer holds), the
/// decisions are made in memory, and one statement writes the outcome (`INSERT … SELECT FROM
/// UNNEST(…)` of the orders, their events, deliveries and jobs, and a conditional `UPDATE` of the
/// counters, each a part of one `WITH`). Six statements in all, each a trip to the server: `BEGIN`,
/// the endpoints, the lock and the lookups in one pipeline, the writes in a second, then `COMMIT`
/// (see `run`).
///
/// A batch on one sale whose row this node wrote last can go in **one** statement instead
/// (`oneStatement`, sent by `PostgresStore` on its lane): decided in memory against the node's
/// last view of the sale (its row after this node's last batch, see `PostgresLastViews`) or
/// against the batch still in flight before it, assuming its new keys placed no order and have no
/// cancelled attempt and its buyers hold what the view says; the statement writes only if all of
/// that holds in the server — the sale's version is the one expected (checked on the row it locks
/// to decrement), the batch before it wrote its orders, and the keys, cancelled attempts, buyers'
/// holdings and webhook endpoints are as assumed. Otherwise it writes nothing and the batch takes
/// the six statements.
///
/// The same checks as the embedded store, in the same order: the sale exists and is open at the
/// request's time, the key is new, the attempt was not cancelled, the buyer stays within the
/// limit, the stock suffices.
struct PostgresReservationLedger {
    /// What a batch decided and wrote, with what the node keeps for its next batch: every sale
    /// read (its row after the batch, and the version it had before) and the endpoints read.
    struct Answer {
        var result: ReservationBatchResult
        var sales: [SaleID: (sale: Sale, versionBefore: Int64)]
        var endpoints: [WebhookEndpoint]
    }

    private struct SaleState {
        var sale: Sale
        var version: Int64
        var granted: Int64 = 0
    }

    private struct Key: Hashable {
        var sale: SaleID
        var key: String
    }

    /// An attempt a cancelled-attempt record refuses: its key and its buyer (the record was an
    /// operator's, for every buyer, or that buyer's own; the lookup tells which apply).
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
        -> EventLoopFuture<Answer>
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
        let requests = batch.map(\.request)
        let lookups = reads.send(lookupQuery(requests))
        return reads.answers().flatMap { rows in
            do {
                var ledger = try Self(
                    rows: rows, endpoints: endpoints, locked: locked, requests: requests, lookups: lookups)
                let outcomes = batch.map { ledger.decide($0) }
                return ledger.save(on: connection, logger: logger).map { [ledger] counters in
                    ledger.answer(outcomes: outcomes, counters: counters)
                }
            } catch {
                return connection.eventLoop.makeFailedFuture(error)
            }
        }
    }

    /// A batch decided for the one-statement path, and the statement that writes it if what it
    /// was decided on still holds.
    struct OneStatement {
        /// The ledger after the batch's decisions: what a batch chained behind it is decided on
        /// (`continued()`).
        var ledger: PostgresReservationLedger
        var outcomes: [ReservationOutcome]
        var query: PostgresQuery
        var sale: SaleID
        /// The sale's version the statement asks for; after it, one more.
        var version: Int64
        /// One of the orders it writes: a batch chained behind it asks for it.
        var firstOrder: OrderID

        /// What the statement answered (its rows): `nil` when it wrote nothing (what it was
        /// decided on no longer held).
        func answer(_ rows: [PostgresRow]) throws -> Answer? {
            guard let row = rows.first, let state = ledger.sales[sale] else { return nil }
            let (id, version) = try row.decode((String, Int64).self)
            guard id == sale.description else { throw CorruptRowError(column: "sales.id") }
            return ledger.answer(
                outcomes: outcomes, counters: [sale: CounterSnapshot(counters: state.sale.stock, version: version)],
                versionsBefore: [sale: self.version])
        }
    }

    /// Decides `batch` (every request on one sale) on `base` — a ledger made from the node's view
    /// of the sale (`init(view:endpoints:)`), or the one a batch still in flight left
    /// (`continued()`) — and makes the statement that writes it only if, in the server, the sale's
    /// version is `version`, the batch `after` wrote its orders (when chained behind one), and
    /// the keys it places, their cancelled attempts, its buyers' holdings and the webhook
    /// endpoints are as `base` has them. `nil` when the batch grants nothing.
    static func oneStatement(_ batch: [Reservation], base: Self, version: Int64, after: OrderID?) -> OneStatement? {
        var ledger = base
        guard let sale = batch.first?.request.saleID else { return nil }
        let heldBefore = ledger.holdings
        let outcomes = batch.map { ledger.decide($0) }
        guard let state = ledger.sales[sale], state.granted > 0, let first = ledger.created.first else { return nil }
        precondition(state.sale.stock.isConserved, "sale \(sale) about to be written not conserved")
        let buyers = Array(Set(ledger.created.map(\.order.buyer)))
        let check = LastViewCheck(
            sale: sale, version: version, after: after?.description, keys: ledger.created.map(\.key), buyers: buyers,
            held: buyers.map { Int64(heldBefore[Holder(sale: sale, buyer: $0)] ?? 0) },
            endpoints: ledger.endpoints.map(\.id.description).sorted())
        let query = ledger.writeQuery(grants: [(sale, state.granted)], check: check)
        return OneStatement(
            ledger: ledger, outcomes: outcomes, query: query, sale: sale, version: version, firstOrder: first.order.id)
    }

    /// This ledger as the start of the next batch's decisions: what it placed and what its buyers
    /// hold stay known; nothing is yet created or granted.
    func continued() -> Self {
        var next = self
        next.created = []
        for id in next.sales.keys { next.sales[id]?.granted = 0 }
        return next
    }

    /// What the one-statement path decided on, for the statement to check: the sale's version;
    /// that the batch before it wrote this order (`after`, when chained); that none of the keys it
    /// places placed an order or has a cancelled attempt; that each of its buyers holds what the
    /// decisions took them to hold (`held`); and that the endpoints are these (ids, sorted by their
    /// bytes, as `COLLATE "C"`).
    struct LastViewCheck {
        var sale: SaleID
        var version: Int64
        var after: String?
        var keys: [String]
        var buyers: [String]
        var held: [Int64]
        var endpoints: [String]
    }

    /// The batch's answer. `versionsBefore`: the version each sale had before the batch, when it
    /// is not the one its state was read with (a batch chained behind another expects that one's).
    private func answer(
        outcomes: [ReservationOutcome], counters: [SaleID: CounterSnapshot], versionsBefore: [SaleID: Int64] = [:]
    ) -> Answer {
        var read: [SaleID: (sale: Sale, versionBefore: Int64)] = [:]
        for (id, state) in sales {
            var sale = state.sale
            if let snapshot = counters[id] { sale.stock = snapshot.counters }
            read[id] = (sale, versionsBefore[id] ?? state.version)
        }
        return Answer(
            result: ReservationBatchResult(outcomes: outcomes, counters: counters), sales: read, endpoints: endpoints)
    }

    /// What the decisions need of each request, one row per request, in the batch's order: the
    /// order its key already placed (its columns, all NULL if none), whether its attempt was
    /// cancelled (for everyone, or for its buyer) and what its buyer holds of the sale. Sent after
    /// the lock, as a statement of its own: its snapshot then sees every batch committed before
    /// this one took its turn.
    static func lookupQuery(_ requests: [OrderRequest]) -> PostgresQuery {
        """
        SELECT EXISTS (
                SELECT 1 FROM cancelled_attempts c WHERE c.sale_id = r.r_sale AND c.idempotency_key = r.r_key
                AND c.buyer IN (r.r_buyer, \(StoreRules.anyBuyer))
            ) AS r_cancelled,
            (SELECT COALESCE(SUM(h.quantity), 0)::bigint FROM orders h
                WHERE h.sale_id = r.r_sale AND h.buyer = r.r_buyer AND h.status IN \(unescaped: StoreRules.liveStatusesSQL)
            ) AS r_held,
            \(unescaped: PostgresRows.orderColumns)
        FROM UNNEST(
            \(requests.map(\.saleID.description))::text[], \(requests.map(\.idempotencyKey))::text[],
            \(requests.map(\.buyer))::text[]
        ) WITH ORDINALITY AS r(r_sale, r_key, r_buyer, r_index)
        LEFT JOIN orders o ON o.sale_id = r.r_sale AND o.idempotency_key = r.r_key
        ORDER BY r.r_index
        """
    }

    private init(
        rows: [[PostgresRow]], endpoints: Int, locked: Int, requests: [OrderRequest], lookups: Int
    ) throws {
        self.endpoints = try rows[endpoints].map(PostgresRows.endpoint)
        for row in rows[locked] {
            let (sale, version) = try PostgresRows.sale(row)
            // Pair of the table's CHECKs: what was read back is conserved.
            precondition(sale.stock.isConserved, "sale \(sale.id) read back not conserved: \(sale.stock)")
            sales[sale.id] = SaleState(sale: sale, version: version)
        }
        guard rows[lookups].count == requests.count else { throw CorruptRowError(column: "orders.idempotency_key") }
        for (request, row) in zip(requests, rows[lookups]) {
            let key = Key(sale: request.saleID, key: request.idempotencyKey)
            let r = row.makeRandomAccess()
            if try r["id"].decode(String?.self) != nil { placed[key] = try PostgresRows.order(row) }
            if try r["r_cancelled"].decode(Bool.self) {
                cancelled.insert(CancelledKey(key: key, buyer: request.buyer))
            }
            holdings[Holder(sale: request.saleID, buyer: request.buyer)] = Int(try r["r_held"].decode(Int64.self))
        }
    }

    /// A ledger that knows nothing: its `writeQuery` gives the write's text (`PreparedWrite`).
    private init(endpoints: [WebhookEndpoint]) {
        self.endpoints = endpoints
    }

    /// A ledger that knows the sale as `view` says and assumes no placed keys, no cancelled
    /// attempts and no holdings (the one-statement path checks them when it writes).
    init(view: PostgresSaleView, endpoints: [WebhookEndpoint]) {
        self.endpoints = endpoints
        sales[view.sale.id] = SaleState(sale: view.sale, version: view.version)
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
                cancelled.contains(CancelledKey(key: key, buyer: request.buyer))
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

    /// Writes the batch's orders, events, deliveries and jobs, and each sale's counters, in one
    /// statement, and commits. Returns the counters of every sale read.
    private func save(on connection: PostgresConnection, logger: Logger) -> EventLoopFuture<[SaleID: CounterSnapshot]> {
        var snapshots: [SaleID: CounterSnapshot] = [:]
        var grants: [(sale: SaleID, counters: StockCounters, units: Int64)] = []
        for (saleID, state) in sales.sorted(by: { $0.key < $1.key }) {
            // Checked before the write, as the table's CHECKs will after it.
            precondition(state.sale.stock.isConserved, "sale \(saleID) about to be written not conserved")
            if state.granted > 0 {
                grants.append((saleID, state.sale.stock, state.granted))
            } else {
                snapshots[saleID] = CounterSnapshot(counters: state.sale.stock, version: state.version)
            }
        }
        var writes = PostgresPipeline(on: connection, logger: logger)
        let written = grants.isEmpty ? nil : writes.send(writeQuery(grants: grants.map { ($0.sale, $0.units) }, check: nil))
        // `COMMIT` goes only once every conditional decrement matched its row, sent from the
        // connection's event loop as soon as the answers are in.
        return writes.answers().flatMap { [snapshots, grants] rows in
            var snapshots = snapshots
            do {
                if let written {
                    var versions: [SaleID: Int64] = [:]
                    for row in rows[written] {
                        let (id, version) = try row.decode((String, Int64).self)
                        guard let sale = SaleID(id) else { throw CorruptRowError(column: "sales.id") }
                        versions[sale] = version
                    }
                    for grant in grants {
                        guard let version = versions[grant.sale] else { throw CorruptRowError(column: "sales.available") }
                        snapshots[grant.sale] = CounterSnapshot(counters: grant.counters, version: version)
                    }
                }
            } catch {
                return connection.eventLoop.makeFailedFuture(error)
            }
            var commit = PostgresPipeline(on: connection, logger: logger)
            commit.send("COMMIT")
            return commit.answers().map { [snapshots] _ in snapshots }
        }
    }

    /// The one-statement path's write (`writeQuery` with a check) as a statement prepared once
    /// per connection, the lane's: its text is the same for every batch — each list is one
    /// parameter, a check left out is parameters of no value — so PostgreSQL parses it once, and
    /// on the lane's connection (`plan_cache_mode = force_generic_plan`) plans it once: parsing
    /// and planning were two fifths of PostgreSQL's CPU for the statement (RESULTS).
    ///
    /// A plan made once is made on the statistics of that moment — on a new database, empty
    /// tables. It holds because each lookup has one index it can use whatever they say: every
    /// check is a subquery probing with its own values, the key's unique index is led by the key
    /// and the buyers' by the sale (migration 15), the previous order and the cancelled attempts
    /// by their primary keys. The sales' decrement may read the (small) table whole when the plan
    /// was made on few sales; `ANALYZE` (autovacuum, often on a table every batch updates) plans
    /// it again.
    struct PreparedWrite: PostgresPreparedStatement {
        typealias Row = PostgresRow
        static let name = "one_statement_batch"
        static let sql = PostgresReservationLedger(endpoints: []).writeQuery(grants: [], check: nil).sql
        var bindings: PostgresBindings

        /// `query`, a `writeQuery`, with its values.
        init(_ query: PostgresQuery) {
            assert(query.sql == Self.sql, "a write whose text is not the prepared one")
            bindings = query.binds
        }

        func makeBindings() -> PostgresBindings { bindings }
        func decodeRow(_ row: PostgresRow) -> PostgresRow { row }
    }

    /// The batch's writes as one statement (each part a data-modifying `WITH`, which PostgreSQL
    /// runs whether or not the query reads it): the orders; each one's `order.created` event; for each
    /// endpoint that wants it, a delivery row; the jobs — the reservations' own, one per delivery,
    /// the batch's expiries (`OrderJobs.expiries`) and payment creations — announced to the other
    /// nodes on the insert; and one conditional decrement per sale. Its rows are each granted
    /// sale's id and new version: a sale missing among them did not have the units (its row is
    /// locked, so the condition holds; it is the guard should it ever not).
    ///
    /// One statement where there were four or five: each was a trip to the server and back, and
    /// on two cores each trip waits for the connection's event loop and the server's process to
    /// get a core.
    ///
    /// With `check` (the one-statement path) it writes only if the sale's version and everything
    /// the decisions assumed still hold: `checked` tests the assumptions on the statement's
    /// snapshot (each request's key, cancelled attempt and buyer by a subquery of its own, so that
    /// each probes its index whatever the planner's statistics say of the sale), and the decrement
    /// also asks for the version on the row it locks — a batch another node commits meanwhile
    /// moves it (so does an attempt cancelled, `cancelAttempt`). A sale not decremented leaves
    /// `granted` empty, and every insert reads `granted` first.
    func writeQuery(grants: [(sale: SaleID, units: Int64)], check: LastViewCheck?) -> PostgresQuery {
        let orders = created.map(\.order)
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
        var deliveries: [WebhookJobs.Delivery] = []
        for order in orders {
            for endpoint in endpoints where endpoint.wants(.created) {
                let delivery = WebhookJobs.Delivery(endpointId: endpoint.id, orderId: order.id, sequence: 1)
                deliveries.append(delivery)
                jobs.append((WebhookJobs.delivery(delivery), order.createdAt))
            }
        }
        let checking = check != nil
        return """
            WITH checked AS (
                SELECT NOT \(checking) OR (
                    (\(check?.after)::text IS NULL OR EXISTS (SELECT 1 FROM orders a WHERE a.id = \(check?.after)))
                    AND NOT EXISTS (
                        SELECT 1 FROM UNNEST(\(check?.keys ?? [])::text[]) AS k(key)
                        WHERE (
                            SELECT 1 FROM orders o
                            WHERE o.sale_id = \(check?.sale.description ?? "") AND o.idempotency_key = k.key
                        ) IS NOT NULL OR (
                            SELECT 1 FROM cancelled_attempts c
                            WHERE c.sale_id = \(check?.sale.description ?? "") AND c.idempotency_key = k.key LIMIT 1
                        ) IS NOT NULL
                    ) AND NOT EXISTS (
                        SELECT 1 FROM UNNEST(\(check?.buyers ?? [])::text[], \(check?.held ?? [])::bigint[]) AS b(buyer, held)
                        WHERE (
                            SELECT COALESCE(SUM(h.quantity), 0) FROM orders h
                            WHERE h.sale_id = \(check?.sale.description ?? "") AND h.buyer = b.buyer
                                AND h.status IN \(unescaped: StoreRules.liveStatusesSQL)
                        ) <> b.held
                    ) AND ARRAY(SELECT e.id FROM webhook_endpoints e WHERE e.deleted_at IS NULL ORDER BY e.id COLLATE "C")
                        = \(check?.endpoints ?? [])::text[]
                ) AS ok
            ), granted AS (
                UPDATE sales SET available = available - g.units, reserved = reserved + g.units, version = version + 1
                FROM UNNEST(\(grants.map(\.sale.description))::text[], \(grants.map(\.units))::bigint[]) AS g(id, units)
                WHERE sales.id = g.id AND sales.available >= g.units
                    AND (NOT \(checking) OR sales.version = \(check?.version ?? 0)) AND (SELECT ok FROM checked)
                RETURNING sales.id, sales.version
            ), new_orders AS (
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
                WHERE EXISTS (SELECT 1 FROM granted)
            ), new_events AS (
                INSERT INTO order_events (\(unescaped: PostgresRows.eventColumns))
                SELECT id, order_id, sale_id, 1, 'order.created', occurred_at FROM UNNEST(
                    \(orders.map { EventID.make(now: $0.createdAt).description })::text[],
                    \(orders.map(\.id.description))::text[], \(orders.map(\.saleID.description))::text[],
                    \(orders.map { PostgresRows.millis($0.createdAt) })::bigint[]
                ) AS e(id, order_id, sale_id, occurred_at)
                WHERE EXISTS (SELECT 1 FROM granted)
            ), new_deliveries AS (
                INSERT INTO webhook_deliveries (endpoint_id, order_id, sequence)
                SELECT endpoint_id, order_id, 1 FROM UNNEST(
                    \(deliveries.map(\.endpointId.description))::text[], \(deliveries.map(\.orderId.description))::text[]
                ) AS d(endpoint_id, order_id)
                WHERE EXISTS (SELECT 1 FROM granted)
            ), new_jobs AS (
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
                WHERE EXISTS (SELECT 1 FROM granted)
                ON CONFLICT DO NOTHING
                RETURNING GREATEST(run_at, created_at) AS due
            ), announced AS (
                SELECT pg_notify(\(PostgresNotices.channel), 'jobs:' || MIN(due)) FROM new_jobs HAVING COUNT(*) > 0
            )
            SELECT granted.id, granted.version FROM granted, (SELECT COUNT(*) FROM announced) AS a
            """
    }
}
