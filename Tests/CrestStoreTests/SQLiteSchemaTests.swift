import CrestCore
import Foundation
import GRDB
import Testing

@testable import CrestStore

/// The embedded store's schema, as migrations leave it: what its hot statements cost SQLite, and
/// that rebuilding a table keeps what was in it.
@Suite("The embedded store's schema")
struct SQLiteSchemaTests {
    private static let lastBeforeJobsRebuild = "v14: the event feed's positions"

    private func migrated(upTo migration: String? = nil) throws -> DatabaseQueue {
        let queue = try DatabaseQueue()
        if let migration {
            try SQLiteMigrations.migrator.migrate(queue, upTo: migration)
        } else {
            try SQLiteMigrations.migrator.migrate(queue)
        }
        return queue
    }

    /// The opcodes SQLite compiles `sql` to.
    private func opcodes(_ sql: String, in db: Database) throws -> [String] {
        let statement = try db.makeStatement(sql: "EXPLAIN " + sql)
        statement.setUncheckedArguments([])  // unbound parameters are NULL: only the plan is looked at
        return try Row.fetchAll(statement).map { $0["opcode"] }
    }

    @Test("no CHECK and no partial index compares with a list of more than two constants")
    func noLongInLists() throws {
        // SQLite evaluates `x IN (a, b, c)` by building a temporary B-tree of the list each time
        // the statement runs: in a CHECK or an index's WHERE that is every row written.
        let schema = try migrated().read { db in
            try Row.fetchAll(db, sql: "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL")
                .map { (name: $0["name"] as String, sql: $0["sql"] as String) }
        }
        #expect(schema.contains { $0.name == "jobs" })
        // Written once per reconciliation run and per difference it finds: not worth a rebuild.
        let rarelyWritten: Set = ["reconciliation_runs", "reconciliation_items"]
        let list = try Regex(#"(?i)\bIN\s*\(([^()]*)\)"#)
        for (name, sql) in schema where !rarelyWritten.contains(name) {
            for match in sql.matches(of: list) {
                let items = match.output[1].substring.map { $0.split(separator: ",").count } ?? 0
                #expect(items <= 2, "\(name): \(String(match.output[0].substring ?? ""))")
            }
        }
    }

    @Test("the order batch's statements and a job's state changes open no temporary table")
    func hotStatementsOpenNoTemporaryTable() throws {
        let statements = [
            SQLiteJobs.insertSQL,
            SQLiteReservationLedger.insertSQL,
            SQLiteReservationLedger.probeSQL,
            "UPDATE jobs SET state = 'completed', finalized_at = ? WHERE id = ? AND state = 'running'",
            "UPDATE jobs SET state = 'retryable', run_at = ? WHERE id = ? AND state = 'running'",
            "SELECT id FROM jobs WHERE unique_key = ? AND \(SQLiteJobs.liveSQL)",
        ]
        try migrated().read { db in
            for sql in statements {
                let codes = try opcodes(sql, in: db)
                #expect(!codes.isEmpty)
                #expect(!codes.contains("OpenEphemeral"), "\(sql)")
            }
        }
    }

    @Test("a live job's unique key is found through its partial index, not by scanning the jobs")
    func uniqueKeyLookupUsesItsIndex() throws {
        try migrated().read { db in
            let plan = try Row.fetchAll(
                db, sql: "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE unique_key = ? AND \(SQLiteJobs.liveSQL)",
                arguments: ["k"]
            ).map { $0["detail"] as String }
            #expect(plan.contains { $0.contains("jobs_unique_live") }, "\(plan)")
        }
    }

    @Test(
        "a sale's orders for its gate are found in the sale's index and read in the table's order, not one lookup each from the index's order"
    )
    func gateOrdersReadInTableOrder() throws {
        try migrated().read { db in
            let plan = try Row.fetchAll(
                db, sql: "EXPLAIN QUERY PLAN " + SQLiteStore.gateOrdersSQL, arguments: ["sale"]
            ).map { $0["detail"] as String }
            #expect(plan.contains { $0.contains("COVERING INDEX orders_by_sale_buyer") }, "\(plan)")
            #expect(plan.contains { $0.contains("INTEGER PRIMARY KEY (rowid=?)") }, "\(plan)")
        }
    }

    @Test("rebuilding the jobs table keeps every job, its id and the ids' sequence, and the live keys' uniqueness")
    func jobsRebuildKeepsJobs() throws {
        let queue = try migrated(upTo: Self.lastBeforeJobsRebuild)
        let insert = """
            INSERT INTO jobs (id, kind, payload, state, attempt, max_attempts, run_at, unique_key, created_at, finalized_at, trace_parent)
            VALUES (?, 'payment.create', '{}', ?, 1, 5, 1000, ?, 900, ?, ?)
            """
        try queue.write { db in
            try db.execute(sql: insert, arguments: [7, "completed", "payment.create:a", 1200, nil])
            try db.execute(sql: insert, arguments: [8, "available", "payment.create:a", nil, "00-trace-01"])
            try db.execute(sql: insert, arguments: [41, "scheduled", nil, nil, nil])
            // The newest job was removed (as the janitor removes old ones): its id is not given again.
            try db.execute(sql: insert, arguments: [42, "discarded", nil, 1300, nil])
            try db.execute(sql: "DELETE FROM jobs WHERE id = 42")
        }
        let before = try queue.read { db in try Row.fetchAll(db, sql: "SELECT * FROM jobs ORDER BY id") }
        try SQLiteMigrations.migrator.migrate(queue)
        try queue.write { db in
            #expect(try Row.fetchAll(db, sql: "SELECT * FROM jobs ORDER BY id") == before)
            let newJob = NewJob(kind: "order.expire", payload: "{}", maxAttempts: 3)
            #expect(try SQLiteJobs.insert(db, newJob, at: Date()).id == JobID(43))
            // A second live job with a live job's key is the first one; a final job's key is free.
            let again = NewJob(kind: "payment.create", payload: "{}", maxAttempts: 5, uniqueKey: "payment.create:a")
            #expect(try SQLiteJobs.insert(db, again, at: Date()) == EnqueuedJob(id: JobID(8), duplicate: true))
            try db.execute(sql: "UPDATE jobs SET state = 'completed' WHERE id = 8")
            #expect(try SQLiteJobs.insert(db, again, at: Date()).duplicate == false)
            // The state is still checked.
            #expect(throws: DatabaseError.self) { try db.execute(sql: "UPDATE jobs SET state = 'lost' WHERE id = 41") }
        }
    }
}
