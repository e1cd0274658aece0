import CrestCore
import Foundation
import GRDB

/// The versioned schema of the embedded store. Migrations only ever get appended.
///
/// Every index is paid for on the order path (each reserved order writes its row, its
/// `order.created` event and its expiry job in the batch's transaction), so tables carry only the
/// indexes that a hot query needs: events are keyed by (order, sequence) without a rowid, and jobs
/// by (state, run_at) for claims.
enum SQLiteMigrations {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: sales and orders") { db in
            try db.execute(
                sql: """
                    CREATE TABLE sales (
                        id TEXT PRIMARY KEY NOT NULL,
                        sku TEXT NOT NULL,
                        title TEXT NOT NULL,
                        price_amount INTEGER NOT NULL,
                        currency TEXT NOT NULL,
                        per_buyer_limit INTEGER NOT NULL,
                        starts_at INTEGER NOT NULL,
                        ends_at INTEGER,
                        payment_window_seconds INTEGER NOT NULL,
                        created_at INTEGER NOT NULL,
                        total INTEGER NOT NULL,
                        available INTEGER NOT NULL,
                        reserved INTEGER NOT NULL,
                        sold INTEGER NOT NULL,
                        version INTEGER NOT NULL DEFAULT 0,
                        CHECK (available >= 0 AND reserved >= 0 AND sold >= 0),
                        CHECK (available + reserved + sold = total)
                    ) STRICT;

                    CREATE TABLE orders (
                        id TEXT PRIMARY KEY NOT NULL,
                        sale_id TEXT NOT NULL REFERENCES sales(id),
                        buyer TEXT NOT NULL,
                        quantity INTEGER NOT NULL CHECK (quantity > 0),
                        amount INTEGER NOT NULL,
                        currency TEXT NOT NULL,
                        status TEXT NOT NULL,
                        idempotency_key TEXT NOT NULL,
                        created_at INTEGER NOT NULL,
                        expires_at INTEGER NOT NULL,
                        updated_at INTEGER NOT NULL,
                        UNIQUE (sale_id, idempotency_key)
                    ) STRICT;

                    CREATE INDEX orders_by_sale_buyer ON orders (sale_id, buyer);
                    """)
        }
        migrator.registerMigration("v2: jobs, outbox events, attempt cancellations, order flags") { db in
            try db.execute(
                sql: """
                    ALTER TABLE orders ADD COLUMN flag TEXT;
                    ALTER TABLE orders ADD COLUMN flagged_at INTEGER;
                    CREATE INDEX orders_flagged ON orders (id) WHERE flag IS NOT NULL;

                    CREATE TABLE order_events (
                        order_id TEXT NOT NULL REFERENCES orders(id),
                        sequence INTEGER NOT NULL CHECK (sequence > 0),
                        id TEXT NOT NULL,
                        sale_id TEXT NOT NULL,
                        type TEXT NOT NULL,
                        occurred_at INTEGER NOT NULL,
                        PRIMARY KEY (order_id, sequence)
                    ) STRICT, WITHOUT ROWID;

                    CREATE TABLE cancelled_attempts (
                        sale_id TEXT NOT NULL REFERENCES sales(id),
                        idempotency_key TEXT NOT NULL,
                        cancelled_at INTEGER NOT NULL,
                        PRIMARY KEY (sale_id, idempotency_key)
                    ) STRICT, WITHOUT ROWID;

                    CREATE TABLE jobs (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        kind TEXT NOT NULL,
                        payload TEXT NOT NULL,
                        state TEXT NOT NULL
                            CHECK (state IN ('scheduled', 'available', 'running', 'retryable', 'completed', 'discarded')),
                        attempt INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
                        max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
                        run_at INTEGER NOT NULL,
                        lease_until INTEGER,
                        leased_by TEXT,
                        last_error TEXT,
                        unique_key TEXT,
                        created_at INTEGER NOT NULL,
                        attempted_at INTEGER,
                        finalized_at INTEGER
                    ) STRICT;

                    CREATE INDEX jobs_by_state_run_at ON jobs (state, run_at);
                    CREATE UNIQUE INDEX jobs_unique_live ON jobs (unique_key)
                        WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available', 'running', 'retryable');
                    """)
            // Orders from before this version get what they would have had: their events, and an
            // expiry job for those still awaiting payment.
            let now = Date()
            // In `SQLiteRows.orderColumns`' order (decoded by position); the later columns are NULL.
            let orders = try Row.fetchAll(
                db,
                sql: """
                    SELECT id, sale_id, buyer, quantity, amount, currency, status, created_at, expires_at, updated_at,
                        NULL, NULL, NULL, NULL, NULL
                    FROM orders ORDER BY id
                    """)
            // Spelled out with this version's columns: `SQLiteEvents.append` writes later ones.
            func append(_ kind: OrderEvent.Kind, of order: Order, sequence: Int, at time: Date) throws {
                try db.execute(
                    sql: "INSERT INTO order_events (id, order_id, sale_id, sequence, type, occurred_at) VALUES (?, ?, ?, ?, ?, ?)",
                    arguments: [
                        EventID.make(now: time).description, order.id.description, order.saleID.description, sequence,
                        kind.rawValue, SQLiteRows.millis(time),
                    ])
            }
            for row in orders {
                let order = try SQLiteRows.order(row)
                try append(.created, of: order, sequence: 1, at: order.createdAt)
                switch order.status {
                case .pendingPayment:
                    // Spelled out with this version's columns: `SQLiteJobs.insert` writes later ones.
                    let job = OrderJobs.expiry(of: order.id, at: order.expiresAt)
                    let runAt = job.runAt ?? now
                    try db.execute(
                        sql: """
                            INSERT INTO jobs (kind, payload, state, max_attempts, run_at, created_at)
                            VALUES (?, ?, ?, ?, ?, ?)
                            """,
                        arguments: [
                            job.kind, job.payload, (runAt > now ? Job.State.scheduled : .available).rawValue,
                            job.maxAttempts, SQLiteRows.millis(runAt), SQLiteRows.millis(now),
                        ])
                case .paid: try append(.paid, of: order, sequence: 2, at: order.updatedAt)
                case .cancelled: try append(.cancelled, of: order, sequence: 2, at: order.updatedAt)
                case .expired: try append(.expired, of: order, sequence: 2, at: order.updatedAt)
                case .refunded: break  // not a status before v3
                }
            }
        }
        migrator.registerMigration("v3: payments") { db in
            try db.execute(
                sql: """
                    ALTER TABLE orders ADD COLUMN payment_id TEXT;
                    ALTER TABLE orders ADD COLUMN payment_status TEXT;
                    ALTER TABLE orders ADD COLUMN pay_url TEXT;
                    CREATE UNIQUE INDEX orders_by_payment ON orders (payment_id) WHERE payment_id IS NOT NULL;

                    CREATE TABLE provider_events (
                        id TEXT PRIMARY KEY NOT NULL,
                        order_id TEXT NOT NULL,
                        received_at INTEGER NOT NULL
                    ) STRICT, WITHOUT ROWID;
                    """)
        }
        migrator.registerMigration("v4: merchant webhook endpoints") { db in
            try db.execute(
                sql: """
                    CREATE TABLE webhook_endpoints (
                        id TEXT PRIMARY KEY NOT NULL,
                        url TEXT NOT NULL,
                        secret TEXT NOT NULL,
                        event_types TEXT NOT NULL,
                        created_at INTEGER NOT NULL,
                        deleted_at INTEGER
                    ) STRICT;

                    CREATE TABLE webhook_deliveries (
                        endpoint_id TEXT NOT NULL,
                        order_id TEXT NOT NULL,
                        sequence INTEGER NOT NULL,
                        delivered_at INTEGER,
                        PRIMARY KEY (endpoint_id, order_id, sequence)
                    ) STRICT, WITHOUT ROWID;
                    """)
        }
        migrator.registerMigration("v5: jobs by kind and state") { db in
            // The job metrics count jobs per kind and state every few seconds: without this index
            // that was a full scan plus a temporary B-tree (70 ms at 170,000 jobs, a core taken
            // from the order path each time); with it, a scan of a small covering index.
            try db.execute(sql: "CREATE INDEX jobs_by_kind_state ON jobs (kind, state)")
        }
        migrator.registerMigration("v6: jobs by state and kind") { db in
            // The counts leave completed jobs out (most of the table after a sale, kept a day):
            // with the state first, the index is searched for the other states only.
            try db.execute(sql: "DROP INDEX jobs_by_kind_state")
            try db.execute(sql: "CREATE INDEX jobs_by_state_kind ON jobs (state, kind)")
        }
        migrator.registerMigration("v7: the trace a job continues") { db in
            try db.execute(sql: "ALTER TABLE jobs ADD COLUMN trace_parent TEXT")
        }
        migrator.registerMigration("v8: cancelled attempts by buyer") { db in
            // A buyer's cancel refuses only that buyer's attempt with the key; '' (an operator's,
            // and every record made before buyers were known) refuses any buyer's. A key of a
            // primary key cannot change in place: the table is rebuilt.
            try db.execute(
                sql: """
                    CREATE TABLE cancelled_attempts_by_buyer (
                        sale_id TEXT NOT NULL REFERENCES sales(id),
                        idempotency_key TEXT NOT NULL,
                        buyer TEXT NOT NULL,
                        cancelled_at INTEGER NOT NULL,
                        PRIMARY KEY (sale_id, idempotency_key, buyer)
                    ) STRICT, WITHOUT ROWID;
                    INSERT INTO cancelled_attempts_by_buyer (sale_id, idempotency_key, buyer, cancelled_at)
                        SELECT sale_id, idempotency_key, '', cancelled_at FROM cancelled_attempts;
                    DROP TABLE cancelled_attempts;
                    ALTER TABLE cancelled_attempts_by_buyer RENAME TO cancelled_attempts;
                    """)
        }
        migrator.registerMigration("v9: a sale's own rate limits") { db in
            // JSON (`SaleLimits`); NULL: the server's defaults.
            try db.execute(sql: "ALTER TABLE sales ADD COLUMN limits TEXT")
        }
        migrator.registerMigration("v10: risk rules") { db in
            // `rule`: the match as JSON (`RiskRule.Match`); deleted rules stay, for the record.
            try db.execute(
                sql: """
                    CREATE TABLE risk_rules (
                        id TEXT PRIMARY KEY,
                        rule TEXT NOT NULL,
                        note TEXT NOT NULL,
                        created_at INTEGER NOT NULL,
                        expires_at INTEGER,
                        deleted_at INTEGER
                    ) STRICT
                    """)
        }
        migrator.registerMigration("v11: reconciliation") { db in
            for statement in ReconciliationSchema.tables(text: "TEXT", integer: "INTEGER", strict: " STRICT") {
                try db.execute(sql: statement)
            }
        }
        migrator.registerMigration("v12: operators' resolutions of reported differences") { db in
            for statement in ReconciliationSchema.resolutions(text: "TEXT", integer: "INTEGER", strict: " STRICT") {
                try db.execute(sql: statement)
            }
        }
        migrator.registerMigration("v13: deliveries by order") { db in
            try db.execute(sql: DeliverySchema.byOrder)
        }
        migrator.registerMigration("v14: the event feed's positions") { db in
            // Each event's place in the feed, given as it is written (one writer at a time: in
            // commit order). Events from before take theirs now, each order's in sequence order.
            try db.execute(
                sql: """
                    ALTER TABLE order_events ADD COLUMN feed_position INTEGER;
                    UPDATE order_events SET feed_position = numbered.position
                    FROM (
                        SELECT order_id, sequence, row_number() OVER (ORDER BY order_id, sequence) AS position
                        FROM order_events
                    ) AS numbered
                    WHERE order_events.order_id = numbered.order_id AND order_events.sequence = numbered.sequence;
                    CREATE UNIQUE INDEX order_events_by_feed_position ON order_events (feed_position);
                    """)
        }
        migrator.registerMigration("v15: job states checked without a temporary table") { db in
            // SQLite evaluates `x IN (a, b, c, …)` — more than two constants — by building a
            // temporary B-tree of the list, once per statement run: the jobs' `CHECK` and the
            // unique keys' partial index did it for every job written (two per order, in the
            // order batch's transaction) and every state change — more than half of a batch's
            // time on the writer (Benchmarks/RESULTS.md). The same rules as comparisons; a
            // CHECK cannot be changed in place, so the table is rebuilt (ids and their sequence kept).
            let sequence = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'jobs'") ?? 0
            try db.execute(
                sql: """
                    CREATE TABLE jobs_rebuilt (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        kind TEXT NOT NULL,
                        payload TEXT NOT NULL,
                        state TEXT NOT NULL CHECK (
                            state = 'scheduled' OR state = 'available' OR state = 'running' OR state = 'retryable'
                            OR state = 'completed' OR state = 'discarded'),
                        attempt INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
                        max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
                        run_at INTEGER NOT NULL,
                        lease_until INTEGER,
                        leased_by TEXT,
                        last_error TEXT,
                        unique_key TEXT,
                        created_at INTEGER NOT NULL,
                        attempted_at INTEGER,
                        finalized_at INTEGER,
                        trace_parent TEXT
                    ) STRICT;
                    INSERT INTO jobs_rebuilt (
                        id, kind, payload, state, attempt, max_attempts, run_at, lease_until, leased_by, last_error,
                        unique_key, created_at, attempted_at, finalized_at, trace_parent)
                    SELECT
                        id, kind, payload, state, attempt, max_attempts, run_at, lease_until, leased_by, last_error,
                        unique_key, created_at, attempted_at, finalized_at, trace_parent
                    FROM jobs;
                    DROP TABLE jobs;
                    ALTER TABLE jobs_rebuilt RENAME TO jobs;
                    CREATE INDEX jobs_by_state_run_at ON jobs (state, run_at);
                    CREATE INDEX jobs_by_state_kind ON jobs (state, kind);
                    CREATE UNIQUE INDEX jobs_unique_live ON jobs (unique_key)
                        WHERE unique_key IS NOT NULL AND state NOT IN ('completed', 'discarded');
                    DELETE FROM sqlite_sequence WHERE name = 'jobs';
                    """)
            // The ids of jobs removed since (the janitor's) are not given again.
            try db.execute(
                sql: "INSERT INTO sqlite_sequence (name, seq) VALUES ('jobs', MAX(?, (SELECT IFNULL(MAX(id), 0) FROM jobs)))",
                arguments: [sequence])
        }
        return migrator
    }
}
