import CrestCore
import Foundation
import GRDB

extension SQLiteStore {
    public func auditRecords(at now: Date) async throws -> AuditRecords {
        // One read transaction: WAL gives it a snapshot, whatever commits meanwhile.
        try await pool.read { db in
            AuditRecords(
                sales: try Row.fetchAll(db, sql: AuditQueries.sales).map(SQLiteRows.sale),
                orders: try Row.fetchAll(db, sql: AuditQueries.orders).map(SQLiteRows.order),
                events: try Row.fetchAll(db, sql: AuditQueries.events).map(SQLiteRows.event),
                jobs: try Row.fetchAll(db, sql: AuditQueries.jobs).map(SQLiteRows.job),
                endpoints: try SQLiteEvents.activeEndpoints(db),
                delivered: Set(
                    try Row.fetchAll(db, sql: AuditQueries.delivered).map {
                        try AuditQueries.delivery(endpoint: $0[0], order: $0[1], sequence: $0[2])
                    }),
                reported: try Self.reportedDifferences(db),
                readAt: now)
        }
    }
}
