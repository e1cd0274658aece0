import GRDB
import GRDBSQLite
import Testing

@testable import CrestStore

/// The embedded store's hot statements bind through SQLite's C API (`DirectStatement`): what they
/// store must be what GRDB would have stored, and a failed or read statement must leave nothing
/// behind.
@Suite("Statements bound through SQLite's C API")
struct DirectStatementTests {
    private func database() throws -> DatabaseQueue {
        let queue = try DatabaseQueue()
        try queue.write { db in
            try db.execute(sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, text TEXT UNIQUE, number INTEGER, maybe TEXT)")
        }
        return queue
    }

    private static let insert = "INSERT INTO t (text, number, maybe) VALUES (?, ?, ?)"

    @Test("text, integers and nil are stored as GRDB stores them; an empty text is '' and not NULL")
    func values() throws {
        let queue = try database()
        try queue.write { db in
            let insert = try DirectStatement(db, sql: Self.insert)
            try insert.execute("", Int64.min, "x" as String?)
            try insert.execute("Grüße, 世界 🎟️", Int.max, nil as String?)
            try insert.execute("plain", 0, Optional("set"))
        }
        let rows = try queue.read { db in try Row.fetchAll(db, sql: "SELECT text, number, maybe FROM t ORDER BY id") }
        #expect(rows.count == 3)
        #expect(rows[0]["text"] as String? == "")
        #expect(rows[0]["number"] as Int64 == Int64.min)
        #expect(rows[0]["maybe"] as String? == "x")
        #expect(rows[1]["text"] as String == "Grüße, 世界 🎟️")
        #expect(rows[1]["number"] as Int == Int.max)
        #expect(rows[1]["maybe"] as String? == nil)
        #expect(rows[2]["maybe"] as String? == "set")
    }

    @Test("a read returns its first row, or nil, and leaves no statement running on the table")
    func firstRow() throws {
        let queue = try database()
        try queue.write { db in
            try DirectStatement(db, sql: Self.insert).execute("a", 7, nil as String?)
            try DirectStatement(db, sql: Self.insert).execute("b", 8, nil as String?)
            let select = try DirectStatement(db, sql: "SELECT number, number > 7 FROM t WHERE text >= ? ORDER BY id")
            let first = try select.firstRow("a") { row in (row.int64(0), row.bool(1)) }
            #expect(first?.0 == 7)
            #expect(first?.1 == false)
            #expect(try select.firstRow("z") { $0.int64(0) } == nil)
            // A statement left mid-step would lock the table: SQLite refuses to drop it then.
            _ = try select.firstRow("a") { $0.int64(0) }
            try db.execute(sql: "DROP TABLE t")
        }
    }

    @Test("a failed statement throws SQLite's error with its message and can run again")
    func failure() throws {
        let queue = try database()
        try queue.write { db in
            let insert = try DirectStatement(db, sql: Self.insert)
            try insert.execute("same", 1, nil as String?)
            do {
                try insert.execute("same", 2, nil as String?)
                Issue.record("a duplicate of a unique column was stored")
            } catch let error as DatabaseError {
                #expect(error.resultCode == .SQLITE_CONSTRAINT)
                #expect(error.message?.contains("UNIQUE") == true)
                #expect(error.sql == Self.insert)
            }
            try insert.execute("other", 3, nil as String?)
            // Too few values is a mistake of the caller's, reported as one (and nothing is stored).
            #expect(throws: DatabaseError.self) { try insert.execute("short", 9) }
            // GRDB's own execution of the same cached statement still binds its own arguments.
            try db.cachedStatement(sql: Self.insert).execute(arguments: ["grdb", 4, "y"])
        }
        let numbers = try queue.read { db in try Int.fetchAll(db, sql: "SELECT number FROM t ORDER BY id") }
        #expect(numbers == [1, 3, 4])
    }

    @Test("a value SQLite refuses to bind is reported with SQLite's own message, and nothing is stored")
    func refusedValue() throws {
        let queue = try database()
        try queue.write { db in
            sqlite3_limit(db.sqliteConnection, SQLITE_LIMIT_LENGTH, 64)
            do {
                try DirectStatement(db, sql: Self.insert).execute(String(repeating: "x", count: 100), 1, nil as String?)
                Issue.record("a text over the connection's length limit was bound")
            } catch let error as DatabaseError {
                #expect(error.resultCode == .SQLITE_TOOBIG)
                #expect(error.message?.contains("too big") == true)
            }
            try DirectStatement(db, sql: Self.insert).execute("short", 2, nil as String?)
        }
        #expect(try queue.read { db in try Int.fetchAll(db, sql: "SELECT number FROM t") } == [2])
    }

    @Test("outside a transaction (or in one SQLite rolled back) nothing runs: rows never commit one by one")
    func outsideTransaction() throws {
        let queue = try database()
        let outcome = queue.writeWithoutTransaction { db in
            Result { try DirectStatement(db, sql: Self.insert).execute("alone", 1, nil as String?) }
        }
        #expect(throws: DatabaseError.self) { try outcome.get() }
        #expect(try queue.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM t") } == 0)
    }
}
