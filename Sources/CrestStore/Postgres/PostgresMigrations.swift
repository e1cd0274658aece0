import Logging
import PostgresNIO

/// The versioned schema of the PostgreSQL store. Migrations only ever get appended.
///
/// Several nodes may start at once on an empty database: each runs the migrations in one
/// transaction that first takes a transaction-scoped advisory lock, so one node migrates while
/// the others wait, then find nothing left to do. DDL is transactional in PostgreSQL, so a
/// migration that fails leaves nothing half-applied.
///
/// The schema mirrors the embedded store's (times as integer milliseconds since 1970, ids as
/// lower-case UUID strings), so both stores read and write the same values.
enum PostgresMigrations {
    /// Any constant works; this one is "crest" in ASCII.
    static let lockKey: Int64 = 0x63_72_65_73_74

    static let all: [(version: Int, name: String, sql: [String])] = [
        (
            1, "sales, orders, outbox events, jobs, payments, merchant webhooks",
            [
                """
                CREATE TABLE sales (
                    id text PRIMARY KEY,
                    sku text NOT NULL,
                    title text NOT NULL,
                    price_amount bigint NOT NULL,
                    currency text NOT NULL,
                    per_buyer_limit integer NOT NULL,
                    starts_at bigint NOT NULL,
                    ends_at bigint,
                    payment_window_seconds integer NOT NULL,
                    created_at bigint NOT NULL,
                    total bigint NOT NULL,
                    available bigint NOT NULL,
                    reserved bigint NOT NULL,
                    sold bigint NOT NULL,
                    version bigint NOT NULL DEFAULT 0,
                    CHECK (available >= 0 AND reserved >= 0 AND sold >= 0),
                    CHECK (available + reserved + sold = total)
                )
                """,
                """
                CREATE TABLE orders (
                    id text PRIMARY KEY,
                    sale_id text NOT NULL REFERENCES sales(id),
                    buyer text NOT NULL,
                    quantity integer NOT NULL CHECK (quantity > 0),
                    amount bigint NOT NULL,
                    currency text NOT NULL,
                    status text NOT NULL,
                    idempotency_key text NOT NULL,
                    created_at bigint NOT NULL,
                    expires_at bigint NOT NULL,
                    updated_at bigint NOT NULL,
                    flag text,
                    flagged_at bigint,
                    payment_id text,
                    payment_status text,
                    pay_url text,
                    UNIQUE (sale_id, idempotency_key)
                )
                """,
                "CREATE INDEX orders_by_sale_buyer ON orders (sale_id, buyer)",
                "CREATE INDEX orders_flagged ON orders (id) WHERE flag IS NOT NULL",
                "CREATE UNIQUE INDEX orders_by_payment ON orders (payment_id) WHERE payment_id IS NOT NULL",
                """
                CREATE TABLE order_events (
                    order_id text NOT NULL REFERENCES orders(id),
                    sequence integer NOT NULL CHECK (sequence > 0),
                    id text NOT NULL,
                    sale_id text NOT NULL,
                    type text NOT NULL,
                    occurred_at bigint NOT NULL,
                    PRIMARY KEY (order_id, sequence)
                )
                """,
                """
                CREATE TABLE cancelled_attempts (
                    sale_id text NOT NULL REFERENCES sales(id),
                    idempotency_key text NOT NULL,
                    cancelled_at bigint NOT NULL,
                    PRIMARY KEY (sale_id, idempotency_key)
                )
                """,
                """
                CREATE TABLE jobs (
                    id bigserial PRIMARY KEY,
                    kind text NOT NULL,
                    payload text NOT NULL,
                    state text NOT NULL
                        CHECK (state IN ('scheduled', 'available', 'running', 'retryable', 'completed', 'discarded')),
                    attempt integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
                    max_attempts integer NOT NULL CHECK (max_attempts >= 1),
                    run_at bigint NOT NULL,
                    lease_until bigint,
                    leased_by text,
                    last_error text,
                    unique_key text,
                    created_at bigint NOT NULL,
                    attempted_at bigint,
                    finalized_at bigint
                )
                """,
                "CREATE INDEX jobs_by_state_run_at ON jobs (state, run_at)",
                """
                CREATE UNIQUE INDEX jobs_unique_live ON jobs (unique_key)
                    WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available', 'running', 'retryable')
                """,
                """
                CREATE TABLE provider_events (
                    id text PRIMARY KEY,
                    order_id text NOT NULL,
                    received_at bigint NOT NULL
                )
                """,
                """
                CREATE TABLE webhook_endpoints (
                    id text PRIMARY KEY,
                    url text NOT NULL,
                    secret text NOT NULL,
                    event_types text NOT NULL,
                    created_at bigint NOT NULL,
                    deleted_at bigint
                )
                """,
                """
                CREATE TABLE webhook_deliveries (
                    endpoint_id text NOT NULL,
                    order_id text NOT NULL,
                    sequence integer NOT NULL,
                    delivered_at bigint,
                    PRIMARY KEY (endpoint_id, order_id, sequence)
                )
                """,
            ]
        ),
        (
            // The job metrics count jobs per kind and state every few seconds (see the embedded
            // store's v5): a scan of this small index instead of the whole table.
            2, "jobs by kind and state",
            ["CREATE INDEX jobs_by_kind_state ON jobs (kind, state)"]
        ),
        (
            // A flash sale's orders all arrive while its sale id is new to the planner's
            // statistics, which then estimate one row for it: the batch's lookups by sale and
            // key (or buyer) used the index on `sale_id` alone and filtered every order of the
            // sale — each batch slower than the last until autoanalyze caught up. Without
            // statistics for the column the planner takes a fixed share of the table and probes
            // the index with both columns. Changing the column's type (to the same type) drops
            // the statistics already gathered; a zero target alone would keep them forever.
            3, "no planner statistics for orders.sale_id",
            [
                "ALTER TABLE orders ALTER COLUMN sale_id SET STATISTICS 0",
                "ALTER TABLE orders ALTER COLUMN sale_id TYPE text",
            ]
        ),
        (
            // The jobs waiting to run, in the order they are claimed. A sale's payment windows end
            // together, so tens of thousands of expiry jobs fall due at once: claiming by
            // `state = … OR (state IN … AND run_at <= now)` sorted every due job to take the
            // first few. This index hands them over in order, and holds no finished job.
            4, "waiting jobs in claim order",
            ["CREATE INDEX jobs_waiting ON jobs (run_at, id) WHERE state IN ('available', 'scheduled', 'retryable')"]
        ),
        (
            // The job metrics' counts leave completed jobs out (most of the table after a sale,
            // kept a day; counting 650,000 rows took 140–190 ms, every few seconds on every node):
            // with the state first, the index is searched for the other states only.
            5, "jobs by state and kind",
            ["DROP INDEX jobs_by_kind_state", "CREATE INDEX jobs_by_state_kind ON jobs (state, kind)"]
        ),
        (6, "the trace a job continues", ["ALTER TABLE jobs ADD COLUMN trace_parent text"]),
        (
            7, "cancelled attempts by buyer",
            [
                // A buyer's cancel refuses only that buyer's attempt with the key; '' (an
                // operator's, and every record made before buyers were known) refuses any buyer's.
                "ALTER TABLE cancelled_attempts ADD COLUMN buyer text NOT NULL DEFAULT ''",
                "ALTER TABLE cancelled_attempts DROP CONSTRAINT cancelled_attempts_pkey",
                "ALTER TABLE cancelled_attempts ADD PRIMARY KEY (sale_id, idempotency_key, buyer)",
            ]
        ),
        // JSON (`SaleLimits`); NULL: the server's defaults.
        (8, "a sale's own rate limits", ["ALTER TABLE sales ADD COLUMN limits text"]),
        (
            // `rule`: the match as JSON (`RiskRule.Match`); deleted rules stay, for the record.
            9, "risk rules",
            [
                """
                CREATE TABLE risk_rules (
                    id text PRIMARY KEY,
                    rule text NOT NULL,
                    note text NOT NULL,
                    created_at bigint NOT NULL,
                    expires_at bigint,
                    deleted_at bigint
                )
                """
            ]
        ),
        (10, "reconciliation", ReconciliationSchema.tables(text: "text", integer: "bigint", strict: "")),
        (
            11, "operators' resolutions of reported differences",
            ReconciliationSchema.resolutions(text: "text", integer: "bigint", strict: "")
        ),
        (12, "deliveries by order", [DeliverySchema.byOrder]),
        (
            13, "the event feed's positions",
            [
                // Given after commit by `PostgresStore.positionNewEvents` (see there why).
                "ALTER TABLE order_events ADD COLUMN feed_position bigint",
                "CREATE UNIQUE INDEX order_events_by_feed_position ON order_events (feed_position)",
                "CREATE INDEX order_events_unpositioned ON order_events (order_id, sequence) WHERE feed_position IS NULL",
                """
                CREATE TABLE event_feed (
                    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
                    head bigint NOT NULL CHECK (head >= 0)
                )
                """,
                "INSERT INTO event_feed (head) VALUES (0)",
            ]
        ),
        (
            // A foreign key is checked row by row, by a query of its own on the referenced table:
            // in a reservation batch's statement, the checks of its orders' sale and its events'
            // order were 0.24 of its 0.84 ms (`auto_explain`, 32 orders). Each order is written by
            // the statement that decrements its sale's locked row, each event with its order or
            // its order's change, and neither is ever deleted: the keys guarded nothing the writes
            // do not. `crest audit` checks the same (`references-hold`).
            14, "no foreign keys on orders and their events",
            [
                "ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_sale_id_fkey",
                "ALTER TABLE order_events DROP CONSTRAINT IF EXISTS order_events_order_id_fkey",
            ]
        ),
        (
            // The one-statement batch's write is planned once per connection (a generic plan,
            // `PostgresReservationLedger.PreparedWrite`): its lookups must find their index on any
            // statistics. With the key unique as (sale_id, idempotency_key), a plan made on an
            // empty table looked keys up through the buyers' index (sale_id, buyer) — both led by
            // sale_id, their costs tie — and then read a hot sale's every order for each key. Led by
            // the key, the unique index is the only one a key lookup can use, and the buyers' the
            // only one a buyer's (a sale's orders are still found by its leading sale_id).
            15, "orders' unique key led by the key",
            [
                "ALTER TABLE orders ADD CONSTRAINT orders_by_key UNIQUE (idempotency_key, sale_id)",
                "ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_sale_id_idempotency_key_key",
            ]
        ),
    ]

    /// Applies every migration the database lacks; returns the versions it applied.
    @discardableResult
    static func migrate(
        _ configuration: PostgresConnection.Configuration, connectWithin limit: Duration, logger: Logger
    ) async throws -> [Int] {
        let connection = try await PostgresConnection.connect(configuration: configuration, within: limit, logger: logger)
        do {
            try await connection.query("BEGIN", logger: logger)
            let applied = try await migrate(on: connection, logger: logger)
            try await connection.query("COMMIT", logger: logger)
            try await connection.close()
            return applied
        } catch {
            try? await connection.close()
            throw error
        }
    }

    private static func migrate(on connection: PostgresConnection, logger: Logger) async throws -> [Int] {
        do {
            try await connection.query("SELECT pg_advisory_xact_lock(\(lockKey))", logger: logger)
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS crest_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """, logger: logger)
            var applied: Set<Int> = []
            for try await version in try await connection.query(
                "SELECT version FROM crest_migrations", logger: logger
            ).decode(Int.self) {
                applied.insert(version)
            }
            var done: [Int] = []
            for migration in all where !applied.contains(migration.version) {
                for statement in migration.sql {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query(
                    "INSERT INTO crest_migrations (version, name) VALUES (\(migration.version), \(migration.name))",
                    logger: logger)
                logger.info("applied migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
                done.append(migration.version)
            }
            return done
        }
    }
}
