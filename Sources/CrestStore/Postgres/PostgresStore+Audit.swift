import CrestCore
import Foundation
import PostgresNIO

extension PostgresStore {
    public func auditRecords(at now: Date) async throws -> AuditRecords {
        // One snapshot for every read, however long they take while nodes keep writing.
        try await transaction(
            begin: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", answerTimeout: bulkReadTimeout
        ) { connection in
            func rows(_ sql: String) async throws -> [PostgresRow] {
                try await connection.query(PostgresQuery(unsafeSQL: sql), logger: self.logger).collect()
            }
            return AuditRecords(
                sales: try await rows(AuditQueries.sales).map { try PostgresRows.sale($0).sale },
                orders: try await rows(AuditQueries.orders).map(PostgresRows.order),
                events: try await rows(AuditQueries.events).map(PostgresRows.event),
                jobs: try await rows(AuditQueries.jobs).map(PostgresRows.job),
                endpoints: try await PostgresEvents.activeEndpoints(on: connection, logger: self.logger),
                delivered: Set(
                    try await rows(AuditQueries.delivered).map {
                        let (endpoint, order, sequence) = try $0.decode((String, String, Int).self)
                        return try AuditQueries.delivery(endpoint: endpoint, order: order, sequence: sequence)
                    }),
                reported: try await Self.reportedDifferences(on: connection, logger: self.logger),
                readAt: now)
        }
    }
}
