@testable import CrestStore
import Foundation
import GRDB
import Testing

@Suite("Embedded store durability")
struct SQLiteDurabilityTests {
    /// GRDB's pool sets `synchronous = NORMAL` when it switches its writer to WAL, after the
    /// configuration's own set-up ran: a commit would then reach the disk only at the next
    /// checkpoint, and a power loss could take acknowledged orders with it.
    @Test("the writer syncs every commit: WAL with synchronous = FULL")
    func writerSyncsEveryCommit() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-durability-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try SQLiteStore(directory: directory)
        let (journal, synchronous) = try await store.pool.write { db in
            (try String.fetchOne(db, sql: "PRAGMA journal_mode"), try Int.fetchOne(db, sql: "PRAGMA synchronous"))
        }
        #expect(journal == "wal")
        #expect(synchronous == 2, "2 is FULL; 1 is NORMAL")
        try await store.close()
    }
}
