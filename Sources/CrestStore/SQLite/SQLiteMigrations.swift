import GRDB

/// The versioned schema of the embedded store. Migrations only ever get appended.
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
        return migrator
    }
}
