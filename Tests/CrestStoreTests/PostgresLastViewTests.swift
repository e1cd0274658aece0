import CrestCore
import CrestTestSupport
import Foundation
import Logging
import PostgresNIO
import Testing

@testable import CrestStore

/// The one-statement path of a PostgreSQL node (`PostgresReservationLedger.oneStatement`): a batch
/// on a sale this node wrote last is decided on the node's view of it and written in one
/// statement that checks the view still holds; when it does not, nothing is written and the batch
/// takes the six statements.
@Suite("PostgreSQL store: a batch in one statement on the node's last view")
struct PostgresLastViewTests {
    @Test(
        "after a node's first batch on a sale, its next ones go in one statement; a replayed key or a buyer who holds units misses and takes the locked path"
    )
    func oneStatementAfterTheFirst() async throws {
        try await withPostgresNodes(1) { cluster, url, nodes in
            let node = nodes[0]
            let sale = makeSale(stock: 10)
            try await node.createSale(sale)
            let first = try await node.reserve([reservation(sale, key: "k1", buyer: "ana")])
            #expect(node.reservationBatchPaths == [.locked: 1])
            let second = try await node.reserve([
                reservation(sale, key: "k2", buyer: "bob"), reservation(sale, key: "k3", buyer: "cyd"),
                reservation(sale, key: "k2", buyer: "bob"),
            ])
            #expect(node.reservationBatchPaths == [.locked: 1, .oneStatement: 1])
            guard case .reserved(let bob) = second.outcomes[0], case .reserved(let cyd) = second.outcomes[1] else {
                Issue.record("\(second.outcomes)")
                return
            }
            #expect(second.outcomes[2] == .duplicate(bob), "the key again in the same batch replays its order")
            let version = try #require(first.counters[sale.id]).version
            #expect(second.counters[sale.id] == CounterSnapshot(counters: stock(10, reserved: 3), version: version + 1))
            #expect(try await node.counters(of: sale.id) == second.counters[sale.id])
            // Written as the locked path writes: the orders, each one's event, their jobs.
            for order in [bob, cyd] {
                #expect(try await node.order(order.id) == order)
                #expect(try await node.events(of: order.id).map(\.kind) == [.created])
            }
            let jobs = try await cluster.psql(url, "SELECT kind, count(*) FROM jobs GROUP BY kind ORDER BY kind")
            #expect(jobs == [["order.expire-batch", "2"]], "one expiry job per batch: \(jobs)")

            // A key that placed an order: the statement writes nothing, the locked path replays it.
            let replay = try await node.reserve([reservation(sale, key: "k1", buyer: "ana")])
            #expect(replay.outcomes.first?.order?.id == first.outcomes.first?.order?.id)
            #expect(node.reservationBatchPaths == [.locked: 2, .oneStatement: 1, .oneStatementMissed: 1])
            // Nobody else moved the sale: the next batch goes in one statement again; a buyer who
            // holds units (the limit is one) misses it and is refused by the locked path.
            _ = try await node.reserve([reservation(sale, key: "k4", buyer: "dan")])
            let again = try await node.reserve([reservation(sale, key: "k5", buyer: "ana")])
            #expect(again.outcomes == [.refused(.buyerLimitReached(limit: 1))])
            #expect(node.reservationBatchPaths == [.locked: 3, .oneStatement: 2, .oneStatementMissed: 2])
            #expect(try await node.counters(of: sale.id)?.counters == stock(10, reserved: 4))
        }
    }

    @Test("the one-statement write is prepared and planned once on the lane: every batch runs its generic plan")
    func preparedOnce() async throws {
        try await withPostgresNodes(1) { _, _, nodes in
            let node = nodes[0]
            let sale = try await saleSeen(by: node, stock: 100)
            let batches = 8
            for index in 0..<batches {
                _ = try await node.reserve([
                    reservation(sale, key: "a\(index)", buyer: "a\(index)"), reservation(sale, key: "b\(index)", buyer: "b\(index)"),
                ])
            }
            #expect(node.reservationBatchPaths == [.locked: 1, .oneStatement: batches])
            let lane = try await node.lane.connection()
            let prepared = try await lane.query(
                """
                SELECT name, generic_plans, custom_plans FROM pg_prepared_statements
                WHERE name = \(PostgresReservationLedger.PreparedWrite.name)
                """, logger: postgresTestLogger
            ).collect().map { try $0.decode((String, Int64, Int64).self) }
            #expect(prepared.count == 1)
            // PostgreSQL's default (`auto`) would make five custom plans first.
            #expect(prepared.first?.1 == Int64(batches), "generic plans: \(prepared)")
            #expect(prepared.first?.2 == 0, "custom plans: \(prepared)")
        }
    }

    @Test("the write's generic plan made on empty tables looks each key and buyer up through its own index")
    func genericPlanOnEmptyTables() async throws {
        try await withPostgresNodes(1) { _, url, _ in
            let connection = try await PostgresConnection.connect(
                configuration: try PostgresURL(url).connection, id: 1, logger: postgresTestLogger)
            let sql = PostgresReservationLedger.PreparedWrite.sql
            let parameters = Set(sql.matches(of: /\$(\d+)/).map { $0.1 }).count
            var plan: [String] = []
            do {
                try await connection.query("SET plan_cache_mode = force_generic_plan", logger: postgresTestLogger)
                try await connection.query(PostgresQuery(unsafeSQL: "PREPARE write AS \(sql)"), logger: postgresTestLogger)
                // A generic plan is the same for any values: none are given.
                let explain = "EXPLAIN EXECUTE write(\(Array(repeating: "NULL", count: parameters).joined(separator: ", ")))"
                plan = try await connection.query(PostgresQuery(unsafeSQL: explain), logger: postgresTestLogger).collect()
                    .map { try $0.decode(String.self) }
                try await connection.close()
            } catch {
                try? await connection.close()
                throw error
            }
            let text = plan.joined(separator: "\n")
            #expect(plan.contains { $0.contains("using orders_by_key on orders o") }, "\(text)")
            #expect(plan.contains { $0.contains("using orders_by_sale_buyer on orders h") }, "\(text)")
            #expect(plan.contains { $0.contains("(idempotency_key = k.key) AND (sale_id = $") }, "\(text)")
            #expect(!plan.contains { $0.contains("Seq Scan on orders") }, "\(text)")
        }
    }

    @Test("another node's batch in between: the node's view is out of date, the statement writes nothing, the locked path decides")
    func anotherNodeMovedTheSale() async throws {
        try await withPostgresNodes(2) { cluster, url, nodes in
            let (a, b) = (nodes[0], nodes[1])
            let sale = try await saleSeen(by: a, stock: 4)
            _ = try await a.reserve([reservation(sale, key: "a2", buyer: "bob")])
            _ = try await b.reserve([reservation(sale, key: "b1", buyer: "cyd")])
            // A's view says two units are left and gives the wrong counters; B sold one of them.
            let late = try await a.reserve([reservation(sale, key: "a3", buyer: "dan")])
            #expect(late.outcomes.first?.order != nil, "\(late.outcomes)")
            #expect(a.reservationBatchPaths == [.locked: 2, .oneStatement: 1, .oneStatementMissed: 1])
            #expect(late.counters[sale.id]?.counters == stock(4, reserved: 4))
            #expect(try await a.counters(of: sale.id) == late.counters[sale.id])
            // The locked path saw the sale moved by someone else: no try until A's view is current.
            let soldOut = try await a.reserve([reservation(sale, key: "a4", buyer: "eve")])
            #expect(soldOut.outcomes == [.refused(.soldOut)])
            #expect(a.reservationBatchPaths == [.locked: 3, .oneStatement: 1, .oneStatementMissed: 1])
            let left = try await cluster.psql(url, "SELECT count(*), count(DISTINCT idempotency_key) FROM orders")
            #expect(left == [["4", "4"]], "\(left)")
        }
    }

    @Test("an attempt another node cancels while this node's statement waits for the sale's row is refused, not placed")
    func cancelledWhileWaitingForTheRow() async throws {
        try await withPostgresNodes(2) { cluster, url, nodes in
            let (a, b) = (nodes[0], nodes[1])
            let sale = try await saleSeen(by: a)

            // A third connection holds the sale's row; B's cancellation waits for it, then A's
            // statement, whose snapshot (taken before the cancellation commits) has no cancelled
            // attempt for the key.
            let holder = try await holdRow(of: sale, url: url)
            async let cancelled = b.cancelAttempt(saleID: sale.id, idempotencyKey: "x", buyer: nil, at: millisecondNow())
            try await waitForLockWaiters(1, cluster: cluster, url: url)
            async let placed = a.reserve([reservation(sale, key: "x", buyer: "bob")])
            try await waitForLockWaiters(2, cluster: cluster, url: url)
            try await releaseRow(holder)

            guard case .recorded = try await cancelled else {
                Issue.record("the cancellation found an order")
                return
            }
            #expect(try await placed.outcomes == [.refused(.attemptCancelled)])
            #expect(a.reservationBatchPaths == [.locked: 2, .oneStatementMissed: 1])
            let orders = try await cluster.psql(url, "SELECT count(*) FROM orders WHERE idempotency_key = 'x'")
            #expect(orders == [["0"]])
        }
    }

    @Test("a webhook endpoint another node added: the statement writes nothing, the locked path writes the delivery it is owed")
    func endpointAddedOnAnotherNode() async throws {
        try await withPostgresNodes(2) { _, _, nodes in
            let (a, b) = (nodes[0], nodes[1])
            let sale = try await saleSeen(by: a)
            let endpoint = WebhookEndpoint(
                id: .make(), url: "http://127.0.0.1:1/hook", secret: String(repeating: "s", count: 16), eventTypes: [.created],
                createdAt: millisecondNow())
            try await b.createWebhookEndpoint(endpoint)
            let placed = try await a.reserve([reservation(sale, key: "a2", buyer: "bob")])
            let order = try #require(placed.outcomes.first?.order)
            #expect(try await a.deliveries(of: order.id).map(\.endpointID) == [endpoint.id])
            #expect(a.reservationBatchPaths == [.locked: 2, .oneStatementMissed: 1])
            // The view now has the endpoint: one statement again, with the delivery.
            let next = try #require(try await a.reserve([reservation(sale, key: "a3", buyer: "cyd")]).outcomes.first?.order)
            #expect(try await a.deliveries(of: next.id).map(\.endpointID) == [endpoint.id])
            #expect(a.reservationBatchPaths == [.locked: 2, .oneStatement: 1, .oneStatementMissed: 1])
        }
    }

    @Test("two batches of a sale in flight on a node: the second is decided on the first's decisions and written behind it")
    func chainedBehindTheFirst() async throws {
        try await withPostgresNodes(1) { cluster, url, nodes in
            let node = nodes[0]
            let sale = try await saleSeen(by: node)
            // The first batch's statement waits for the sale's row, held by a third connection.
            let holder = try await holdRow(of: sale, url: url)
            async let first = node.reserve([reservation(sale, key: "k2", buyer: "bob"), reservation(sale, key: "k3", buyer: "cyd")])
            try await waitForLockWaiters(1, cluster: cluster, url: url)
            // Decided on the first's decisions: its key is that order, its buyer holds the limit.
            async let second = node.reserve([
                reservation(sale, key: "k4", buyer: "dan"), reservation(sale, key: "k3", buyer: "cyd"),
                reservation(sale, key: "k5", buyer: "bob"),
            ])
            #expect(try await eventually(timeout: .seconds(30)) { node.oneStatementBatchesInFlight == 2 })
            try await releaseRow(holder)

            let (a, b) = try await (first, second)
            guard case .reserved(let cyd) = a.outcomes[1], case .reserved(let dan) = b.outcomes[0] else {
                Issue.record("\(a.outcomes) \(b.outcomes)")
                return
            }
            #expect(b.outcomes[1] == .duplicate(cyd))
            #expect(b.outcomes[2] == .refused(.buyerLimitReached(limit: 1)))
            #expect(node.reservationBatchPaths == [.locked: 1, .oneStatement: 2])
            #expect(try await node.order(dan.id) == dan)
            #expect(try await node.counters(of: sale.id) == b.counters[sale.id])
            #expect(b.counters[sale.id]?.counters == stock(10, reserved: 4))
            // Each order, the chained batch's too, has its one `order.created` event, first in
            // its sequence.
            let events = try await cluster.psql(
                url,
                """
                SELECT o.idempotency_key, count(e.id), min(e.sequence) FROM orders o
                LEFT JOIN order_events e ON e.order_id = o.id AND e.type = 'order.created'
                GROUP BY o.idempotency_key ORDER BY o.idempotency_key
                """)
            #expect(events == [["k1", "1", "1"], ["k2", "1", "1"], ["k3", "1", "1"], ["k4", "1", "1"]])
        }
    }

    @Test(
        "a node keeps the views of at most so many sales: past that, those batched least recently are dropped and take the six statements again"
    )
    func viewsBounded() {
        var views = PostgresLastViews(maxSales: 4)
        let sales = (0..<5).map { _ in makeSale(stock: 10) }
        func batch(on sale: Sale) {
            let batch = [reservation(sale, key: "k", buyer: "ana")]
            views.startLocked(batch)
            let result = ReservationBatchResult(
                outcomes: [.refused(.soldOut)], counters: [sale.id: CounterSnapshot(counters: sale.stock, version: 1)])
            views.finishLocked(
                batch,
                answer: PostgresReservationLedger.Answer(result: result, sales: [sale.id: (sale, 1)], endpoints: []))
        }
        func viewed(_ sale: Sale) -> Bool { views.mayTryOneStatement([reservation(sale, key: "n", buyer: "bo")]) }
        for sale in sales.prefix(4) { batch(on: sale) }
        batch(on: sales[0])
        #expect(views.salesKept == 4 && sales.prefix(4).allSatisfy(viewed))
        // A fifth sale: the two batched least recently (sales 1 and 2) are dropped.
        batch(on: sales[4])
        #expect(views.salesKept == 2)
        #expect(sales.map(viewed) == [true, false, false, false, true])
        batch(on: sales[1])
        #expect(viewed(sales[1]))
    }

    @Test("a batch chained behind one that wrote nothing writes nothing, though the version it asks for was made by someone else")
    func chainedBehindAMiss() async throws {
        try await withPostgresNodes(1) { cluster, url, nodes in
            let node = nodes[0]
            let sale = try await saleSeen(by: node)
            // Someone else moves the sale (its version, one step) and cancels the attempt "k2",
            // while the first batch's statement (k2) waits for the row and the second (k2 again,
            // decided as the first's order; k3) is queued behind it.
            let holder = try await holdRow(
                of: sale, url: url,
                running: [
                    "UPDATE sales SET version = version + 1 WHERE id = \(sale.id.description)",
                    """
                    INSERT INTO cancelled_attempts (sale_id, idempotency_key, buyer, cancelled_at)
                    VALUES (\(sale.id.description), 'k2', '', 0)
                    """,
                ])
            async let first = node.reserve([reservation(sale, key: "k2", buyer: "bob")])
            try await waitForLockWaiters(1, cluster: cluster, url: url)
            async let second = node.reserve([reservation(sale, key: "k2", buyer: "bob"), reservation(sale, key: "k3", buyer: "cyd")])
            #expect(try await eventually(timeout: .seconds(30)) { node.oneStatementBatchesInFlight == 2 })
            try await releaseRow(holder)

            let (a, b) = try await (first, second)
            #expect(a.outcomes == [.refused(.attemptCancelled)])
            #expect(b.outcomes.first == .refused(.attemptCancelled), "not the first's order, which was never written")
            #expect(b.outcomes.last?.order != nil)
            #expect(node.reservationBatchPaths == [.locked: 3, .oneStatementMissed: 2])
            let orders = try await cluster.psql(url, "SELECT idempotency_key FROM orders ORDER BY idempotency_key")
            #expect(orders == [["k1"], ["k3"]])
        }
    }

    @Test("orders the planner's statistics do not know of: the statement's checks probe the indexes with each key and buyer")
    func checksUseTheIndexes() async throws {
        try await withPostgresNodes(1) { cluster, url, nodes in
            let sale = makeSale(stock: 1_000_000)
            try await nodes[0].createSale(sale)
            // A fresh database: the orders table was never analyzed, and holds the sale's orders.
            _ = try await cluster.psql(
                url,
                """
                INSERT INTO orders (id, sale_id, buyer, quantity, amount, currency, status, idempotency_key,
                    created_at, expires_at, updated_at)
                SELECT 'o' || i, '\(sale.id)', 'b' || i, 1, 1000, 'CNY', 'pending_payment', 'k' || i, 0, 0, 0
                FROM generate_series(1, 20000) AS i;
                """)
            let batch = (1...32).map { reservation(sale, key: "n\($0)", buyer: "n\($0)") }
            let view = PostgresSaleView(sale: sale, version: 0, current: true)
            var explain = try #require(
                PostgresReservationLedger.oneStatement(
                    batch, base: PostgresReservationLedger(view: view, endpoints: []), version: 0, after: nil)
            ).query
            explain.sql = "EXPLAIN " + explain.sql
            let plan = try await nodes[0].rows(explain).map { try $0.decode(String.self) }
            let conditions = plan.filter { $0.contains("Index Cond") }
            for probe in ["idempotency_key = k.key", "buyer = b.buyer"] {
                #expect(conditions.contains { $0.contains(probe) }, "plan: \(plan.joined(separator: "\n"))")
            }
            #expect(!plan.contains { $0.contains("Join Filter") || $0.contains("Seq Scan on orders") })
        }
    }

    private func stock(_ total: Int64, reserved: Int64) -> StockCounters {
        StockCounters(total: total, available: total - reserved, reserved: reserved, sold: 0)
    }

    /// A sale on `node`, with one batch placed ("k1" for "ana"): the node has a current view of it.
    private func saleSeen(by node: PostgresStore, stock: Int64 = 10) async throws -> Sale {
        let sale = makeSale(stock: stock)
        try await node.createSale(sale)
        _ = try await node.reserve([reservation(sale, key: "k1", buyer: "ana")])
        return sale
    }
}
