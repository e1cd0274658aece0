import CrestCore
import CrestStore

extension Engine {
    /// Checks every promise on the store's data now (`crest audit`, `GET /v1/audit`).
    package func audit() async throws -> AuditReport {
        let records = try await withStore("read the store for an audit") { try await store.auditRecords(at: clock()) }
        return StoreAudit.check(records)
    }
}
