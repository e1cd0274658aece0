import CrestSQLiteWAL
import Foundation
import GRDB
import GRDBSQLite
import Testing

/// The embedded store's write-ahead log, written through `CrestSQLiteWAL`: each transaction's
/// frames gathered into a few writes, and nothing SQLite relies on changed — what a commit wrote
/// reads back, from the writer and from every other connection, past the buffer's size and past
/// the page cache.
@Suite("The write-ahead log in few writes")
struct WALBufferTests {
    /// Writes to `pool`'s log asked for and made, since it was opened: this database's alone (the
    /// process-wide counts also take in every other test's logs, which the full suite writes to at
    /// the same time).
    private func statistics(_ pool: DatabasePool) -> (requested: Int64, written: Int64) {
        let name = pool.writeWithoutTransaction { db in String(cString: sqlite3_db_filename(db.sqliteConnection, "main")) }
        var requested: CLongLong = 0
        var written: CLongLong = 0
        #expect(crest_sqlite_wal_log_statistics(name, &requested, &written) == 1, "no log open for \(name)")
        return (Int64(requested), Int64(written))
    }

    private func withPool(synchronous: String, _ body: (DatabasePool) throws -> Void) throws {
        #expect(crest_sqlite_wal_install() == SQLITE_OK)
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-wal-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let pool = try DatabasePool(path: directory.appending(path: "test.sqlite").path)
        try pool.barrierWriteWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
            try db.execute(sql: "CREATE TABLE rows (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
        }
        try body(pool)
    }

    /// 1 KiB that differs from row to row.
    private func payload(_ id: Int) -> Data {
        Data((0..<1024).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ id &* 7) })
    }

    @Test(
        "one transaction of 2 MiB, its pages spilled from a small cache and read back mid-way: every row reads back, from another connection too"
    )
    func bigTransaction() throws {
        try withPool(synchronous: "FULL") { pool in
            try pool.write { db in
                // Spills dirty pages to the log mid-transaction and reads them back when needed.
                try db.execute(sql: "PRAGMA cache_size = 16")
                for id in 1...2_000 {
                    try db.execute(sql: "INSERT INTO rows (id, payload) VALUES (?, ?)", arguments: [id, payload(id)])
                }
                try db.execute(sql: "UPDATE rows SET payload = ? WHERE id % 7 = 0", arguments: [payload(0)])
            }
            try pool.read { db in
                #expect(try Int.fetchOne(db, sql: "SELECT count(*) FROM rows") == 2_000)
                for row in try Row.fetchAll(db, sql: "SELECT id, payload FROM rows") {
                    let id: Int = row["id"]
                    #expect(row["payload"] == payload(id % 7 == 0 ? 0 : id), "row \(id)")
                }
                #expect(try String.fetchOne(db, sql: "PRAGMA integrity_check") == "ok")
            }
        }
    }

    @Test("a transaction's frames (a header and a page each) leave in a few writes, not two per frame")
    func fewWrites() throws {
        try withPool(synchronous: "FULL") { pool in
            let before = statistics(pool)
            try pool.write { db in
                for id in 1...300 {
                    try db.execute(sql: "INSERT INTO rows (id, payload) VALUES (?, ?)", arguments: [id, payload(id)])
                }
            }
            let after = statistics(pool)
            let requested = after.requested - before.requested
            let written = after.written - before.written
            // ~80 frames: ~160 writes asked for, ~3 made.
            #expect(requested >= 150, "\(requested) writes asked for")
            #expect(written * 4 <= requested, "\(written) writes made for \(requested) asked for")
            #expect(try pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM rows") } == 300)
        }
    }

    @Test("synchronous = NORMAL (commits not synced): another connection reads each commit at once, and checkpoints keep it")
    func unsyncedCommitsAreRead() throws {
        try withPool(synchronous: "NORMAL") { pool in
            for id in 1...300 {
                try pool.write { db in
                    try db.execute(sql: "INSERT INTO rows (id, payload) VALUES (?, ?)", arguments: [id, payload(id)])
                }
                let read = try pool.read { db in
                    (
                        try Int.fetchOne(db, sql: "SELECT count(*) FROM rows"),
                        try Data.fetchOne(db, sql: "SELECT payload FROM rows WHERE id = ?", arguments: [id])
                    )
                }
                try #require(read.0 == id && read.1 == payload(id), "commit \(id) read back as \(String(describing: read.0))")
                if id % 100 == 0 { _ = try pool.writeWithoutTransaction { try $0.checkpoint(.truncate) } }
            }
        }
    }
}
