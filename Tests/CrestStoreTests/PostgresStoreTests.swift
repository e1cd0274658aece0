import CrestCore
import CrestTestSupport
import Foundation
import Logging
import PostgresNIO
import Testing

@testable import CrestStore

/// What only the shared store has: several nodes starting at once, announcements between them, the
/// conditional decrement that keeps nodes honest, and its query plans.
@Suite("PostgreSQL store: several nodes")
struct PostgresStoreTests {
    static let quietLogger = {
        var logger = Logger(label: "crest.test.store")
        logger.logLevel = .warning
        return logger
    }()

    @Test("four nodes starting at once on an empty database: one migrates, all open")
    func concurrentMigrations() async throws {
        _ = try await StoreKind.postgres.with { open in
            let stores = try await withThrowingTaskGroup(of: (any Store).self) { group in
                for _ in 0..<4 { group.addTask { try await open() } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(stores.count == 4)
            let sale = makeSale(stock: 1)
            try await stores[0].createSale(sale)
            #expect(try await stores[3].sale(sale.id) == sale)
        }
    }

    @Test("a node hears what another did: jobs enqueued, stock given back")
    func announcements() async throws {
        _ = try await StoreKind.postgres.with { open in
            let (a, b) = (try await open(), try await open())
            var heard = b.changes().makeAsyncIterator()
            let sale = makeSale(stock: 2)
            try await a.createSale(sale)
            let now = millisecondNow()
            let order = try #require(try await a.reserve([reservation(sale, key: "k", buyer: "ana", at: now)]).outcomes[0].order)
            // The reservation's expiry job is due at the end of the payment window.
            #expect(await heard.next() == .jobsDue(at: now.addingTimeInterval(900)))
            _ = try await a.transition(order.id, by: .cancel, at: now)
            #expect(await heard.next() == .stockReleased(sale.id))
            _ = try await a.enqueue([NewJob(kind: "test.now", payload: "x")], at: now)
            #expect(await heard.next() == .jobsDue(at: now))
            // A rolled-back change announces nothing: the next thing heard is the next commit.
            await #expect(throws: OrderError.orderNotFound) { try await a.transition(.make(), by: .cancel, at: now) }
            _ = try await a.enqueue([NewJob(kind: "test.later", payload: "y", runAt: now.addingTimeInterval(5))], at: now)
            #expect(await heard.next() == .jobsDue(at: now.addingTimeInterval(5)))
        }
    }

    @Test(
        "a listening connection that stops answering (its backend stopped, as a network that drops packets without a word) is given up: the node connects again, hears `.resynchronize`, then other nodes again",
        .timeLimit(.minutes(3))
    )
    func silentListenerReplaced() async throws {
        // A cluster of its own: a stopped listening backend can hold the cluster's notification
        // queue (every NOTIFY of every database waits then), which the shared cluster's tests use.
        // Here nothing is announced before the stop, so the backend is stopped idle.
        guard let cluster = try await PostgresCluster.dedicated() else { return }
        let url = try await cluster.createDatabase()
        // Probed every 500 ms and given 5 s to answer — the same bound holds each connection's
        // start-up, which in a full suite on two cores once took more than 2 s.
        let a = try await PostgresStore.connect(
            url: url, logger: Self.quietLogger, leaseTimeout: .seconds(30), answerTimeout: .seconds(5), listenerProbe: .milliseconds(500))
        let heard = Locked<[StoreChange]>([])
        let hearing = Task { for await change in a.changes() { heard.withLock { $0.append(change) } } }
        defer { hearing.cancel() }
        var stopped: pid_t?
        var b: PostgresStore?
        do {
            // A's listener is the only one on this database yet: its backend.
            let backend = try #require(
                try await cluster.psql(
                    url,
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'crest-listener'"
                ).first.flatMap { $0.first.flatMap { pid_t($0) } })
            let other = try await PostgresStore.connect(
                url: url, logger: Self.quietLogger, leaseTimeout: .seconds(30), answerTimeout: .seconds(30))
            b = other
            kill(backend, SIGSTOP)
            stopped = backend
            #expect(try await eventually(timeout: .seconds(30)) { heard.value.contains(.resynchronize) }, "\(heard.value)")
            // Heard again through the new connection, while the old one's backend is still stopped.
            let now = millisecondNow()
            _ = try await other.enqueue([NewJob(kind: "test.now", payload: "x")], at: now)
            #expect(try await eventually(timeout: .seconds(30)) { heard.value.contains(.jobsDue(at: now)) }, "\(heard.value)")
            kill(backend, SIGCONT)
            stopped = nil
            try await a.close()
            try await other.close()
        } catch {
            if let stopped { kill(stopped, SIGCONT) }
            try? await a.close()
            try? await b?.close()
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    @Test("a sale new to the planner's statistics: the batch's lookups probe the index with the key or buyer")
    func newSaleLookupsUseBothIndexColumns() async throws {
        try await withFreshStore { cluster, url, store in
            let (old, new) = (makeSale(stock: 1_000_000), makeSale(stock: 1_000_000))
            try await store.createSale(old)
            try await store.createSale(new)
            // An earlier sale's orders are all the statistics know; the new sale has none yet.
            _ = try await cluster.psql(
                url,
                """
                INSERT INTO orders (id, sale_id, buyer, quantity, amount, currency, status, idempotency_key,
                    created_at, expires_at, updated_at)
                SELECT 'o' || i, '\(old.id)', 'b' || i, 1, 1000, 'CNY', 'pending_payment', 'k' || i, 0, 0, 0
                FROM generate_series(1, 20000) AS i;
                ANALYZE orders;
                """)
            // PostgresReservationLedger's lookups for a batch of 32 on the new sale.
            let requests = (1...32).map {
                OrderRequest(saleID: new.id, idempotencyKey: "n\($0)", buyer: "n\($0)", quantity: 1)
            }
            var explain = PostgresReservationLedger.lookupQuery(requests)
            explain.sql = "EXPLAIN " + explain.sql
            let plan = try await store.rows(explain).map { try $0.decode(String.self) }
            let conditions = plan.filter { $0.contains("Index Cond") }
            for column in ["idempotency_key", "buyer"] {
                #expect(conditions.contains { $0.contains(column) }, "plan: \(plan.joined(separator: "\n"))")
            }
        }
    }

    @Test("claiming from a backlog of due jobs walks the waiting jobs in order instead of sorting them all")
    func claimWalksWaitingJobsInOrder() async throws {
        try await withFreshStore { cluster, url, store in
            // A sale's payment windows ran out together: 20,000 expiry jobs due, more waiting, some done.
            _ = try await cluster.psql(
                url,
                """
                INSERT INTO jobs (kind, payload, state, max_attempts, run_at, created_at)
                SELECT 'order.expire', 'o' || i, CASE WHEN i % 4 = 0 THEN 'completed' ELSE 'scheduled' END, 5,
                    CASE WHEN i <= 20000 THEN i ELSE 10000000000000 + i END, 0
                FROM generate_series(1, 40000) AS i;
                ANALYZE jobs;
                """)
            let now = PostgresRows.millis(Date())
            let plan = try await cluster.psql(
                url,
                "EXPLAIN SELECT id FROM jobs \(PostgresStore.dueJobs(at: now)) ORDER BY run_at, id LIMIT 32 FOR UPDATE SKIP LOCKED"
            ).map { $0.joined(separator: "|") }
            #expect(plan.contains { $0.contains("jobs_waiting") }, "plan: \(plan.joined(separator: "\n"))")
            #expect(!plan.contains { $0.contains("Sort") }, "plan: \(plan.joined(separator: "\n"))")
            // And the claim takes the earliest due jobs.
            let claim = try await store.claimJobs(limit: 3, worker: "w", lease: .seconds(30), at: Date())
            #expect(claim.jobs.map(\.payload) == ["o1", "o2", "o3"])
            #expect(claim.nextRunAt == Date(timeIntervalSince1970: 0.005))
        }
    }

    @Test("the job metrics' counts search the index by state and read no completed job")
    func jobCountsSkipCompletedJobs() async throws {
        try await withFreshStore { cluster, url, store in
            // A day's retention of completed jobs after a sale, and the few still waiting.
            _ = try await cluster.psql(
                url,
                """
                INSERT INTO jobs (kind, payload, state, max_attempts, run_at, created_at)
                SELECT 'order.expire', 'o' || i, CASE WHEN i % 100 = 0 THEN 'scheduled' ELSE 'completed' END, 5, i, 0
                FROM generate_series(1, 40000) AS i;
                """)
            _ = try await cluster.psql(url, "VACUUM ANALYZE jobs")
            let plan = try await cluster.psql(url, "EXPLAIN \(JobStatistics.countsSQL)").map { $0.joined(separator: "|") }
            // An index-only scan when the visibility map allows, a bitmap scan of it otherwise.
            #expect(!plan.contains { $0.contains("Seq Scan") }, "plan: \(plan.joined(separator: "\n"))")
            #expect(plan.contains { $0.contains("Scan") && $0.contains("jobs_by_state_kind") }, "plan: \(plan.joined(separator: "\n"))")
            #expect(plan.contains { $0.contains("Index Cond") && $0.contains("state") }, "plan: \(plan.joined(separator: "\n"))")
            let statistics = try await store.jobStatistics(at: Date(timeIntervalSince1970: 0))
            #expect(statistics.counts == ["order.expire": [.scheduled: 400]])
        }
    }

    @Test("a conditional decrement that matches no row commits nothing of its batch, and the store goes on")
    func missedDecrementCommitsNothing() async throws {
        try await withFreshStore { cluster, url, store in
            let sale = makeSale(stock: 10)
            try await store.createSale(sale)
            // Every UPDATE of a sale's row skipped, as if the stock had gone between the batch's
            // read and its decrement: `UPDATE … WHERE available >= n RETURNING` answers no row.
            _ = try await cluster.psql(
                url,
                """
                CREATE FUNCTION skip_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
                CREATE TRIGGER skip_sales_update BEFORE UPDATE ON sales FOR EACH ROW EXECUTE FUNCTION skip_update();
                """)
            await #expect(throws: (any Error).self) {
                try await store.reserve([reservation(sale, key: "k1", buyer: "ana"), reservation(sale, key: "k2", buyer: "bob")])
            }
            let left = try await cluster.psql(
                url,
                """
                SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_events), (SELECT count(*) FROM jobs),
                    (SELECT available FROM sales WHERE id = '\(sale.id)')
                """)
            #expect(left == [["0", "0", "0", "10"]], "orders, events, jobs, available: \(left)")

            // The failed transaction was rolled back at once: nothing holds the sales table (a
            // transaction left open on a pooled connection would, until the server ends it), and
            // its connection serves the next batches.
            _ = try await cluster.psql(url, "SET lock_timeout = '5s'; DROP TRIGGER skip_sales_update ON sales")
            for (index, buyer) in ["ana", "bob", "cyd"].enumerated() {
                let outcome = try await store.reserve([reservation(sale, key: "k\(index + 1)", buyer: buyer)]).outcomes
                #expect(outcome.first?.order?.buyer == buyer, "\(outcome)")
            }
            let counters = try #require(try await store.counters(of: sale.id)).counters
            #expect(counters.available == 7 && counters.reserved == 3 && counters.isConserved, "\(counters)")
        }
    }

    @Test("calls waiting for a connection are counted while they wait, and not once they have one")
    func connectionWaiters() async throws {
        guard let cluster = try await PostgresCluster.shared() else { return }
        let url = try await cluster.createDatabase()
        var logger = Logger(label: "crest.test.store")
        logger.logLevel = .warning
        let store = try await PostgresStore.connect(
            url: url, logger: logger, maxConnections: 1, leaseTimeout: .seconds(30), answerTimeout: .seconds(600))
        #expect(store.connectionWaiters == 0)
        // One call holds the only connection for five seconds; three more wait for it. The holder
        // is counted too until it has the connection (a full suite's busy pool was seen to give it
        // its connection after the others asked): the count comes to three once it has.
        async let holder: [PostgresRow] = store.rows("SELECT pg_sleep(5)")
        try await Task.sleep(for: .milliseconds(300))
        async let waiting: Void = withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<3 { group.addTask { try await store.ping() } }
            try await group.waitForAll()
        }
        let counted = try await eventually(timeout: .seconds(4), every: .milliseconds(20)) { store.connectionWaiters == 3 }
        #expect(counted, "waiters: \(store.connectionWaiters)")
        _ = try await (holder, waiting)
        #expect(store.connectionWaiters == 0)
        try await store.close()
    }

    @Test("an event written before others commit but committed after them is not skipped by a consumer past them")
    func lateCommitIsNotSkipped() async throws {
        try await withFreshStore { _, url, store in
            let (sale, orders) = try await TransitionConformanceTests.pendingOrders(4, on: store)
            var consumed = try await EventFeedConformanceTests.drain(store, pageSize: 10)
            #expect(consumed.count == 4)

            // A transaction writes an event of order 1 and stays open, uncommitted.
            let slow = try await PostgresConnection.connect(
                configuration: try PostgresURL(url).connection, id: 1, logger: Self.quietLogger)
            let late = EventID.make(now: millisecondNow())
            try await slow.query("BEGIN", logger: Self.quietLogger)
            try await slow.query(
                """
                INSERT INTO order_events (id, order_id, sale_id, sequence, type, occurred_at)
                VALUES (\(late.description), \(orders[0].id.description), \(sale.id.description), 2, 'order.cancelled', 0)
                """, logger: Self.quietLogger)
            // Meanwhile others commit, and the consumer reads past them.
            _ = try await store.transitions(
                [TransitionRequest(orderID: orders[1].id, event: .pay), TransitionRequest(orderID: orders[2].id, event: .cancel)],
                at: millisecondNow())
            let meanwhile = try await EventFeedConformanceTests.drain(store, after: consumed.last!.position, pageSize: 10)
            #expect(meanwhile.map(\.event.orderID) == [orders[1].id, orders[2].id])
            consumed += meanwhile

            try await slow.query("COMMIT", logger: Self.quietLogger)
            try await slow.close()
            let after = try await EventFeedConformanceTests.drain(store, after: consumed.last!.position, pageSize: 10)
            #expect(after.map(\.event.id) == [late])
            consumed += after
            EventFeedConformanceTests.expectWellFormed(consumed)

        }
    }

    /// A store on a database of its own, with the cluster to look into it with `psql`; the store
    /// is closed at the end.
    private func withFreshStore(_ body: (PostgresCluster, String, PostgresStore) async throws -> Void) async throws {
        guard let cluster = try await PostgresCluster.shared() else { return }
        let url = try await cluster.createDatabase()
        var logger = Logger(label: "crest.test.store")
        logger.logLevel = .warning
        let store = try await PostgresStore.connect(url: url, logger: logger, leaseTimeout: .seconds(30), answerTimeout: .seconds(600))
        do {
            try await body(cluster, url, store)
        } catch {
            try? await store.close()
            throw error
        }
        try await store.close()
    }
}
