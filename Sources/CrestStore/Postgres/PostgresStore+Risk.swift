import CrestCore
import Foundation
import PostgresNIO

extension PostgresStore {
    public func createRiskRule(_ rule: RiskRule) async throws {
        _ = try await rows(
            """
            INSERT INTO risk_rules (id, rule, note, created_at, expires_at)
            VALUES (\(rule.id.description), \(rule.storedMatch), \(rule.note), \(PostgresRows.millis(rule.createdAt)),
                \(rule.expiresAt.map(PostgresRows.millis)))
            """)
    }

    public func riskRules() async throws -> [RiskRule] {
        try await rows(
            "SELECT id, rule, note, created_at, expires_at FROM risk_rules WHERE deleted_at IS NULL ORDER BY id"
        ).compactMap { row in
            let r = row.makeRandomAccess()
            guard let id = RiskRuleID(try r["id"].decode(String.self)),
                let match = RiskRule.match(storedJSON: try r["rule"].decode(String.self))
            else { return nil }
            return RiskRule(
                id: id, match: match, note: try r["note"].decode(String.self),
                createdAt: PostgresRows.date(try r["created_at"].decode(Int64.self)),
                expiresAt: try r["expires_at"].decode(Int64?.self).map(PostgresRows.date))
        }
    }

    public func deleteRiskRule(_ id: RiskRuleID, at now: Date) async throws -> Bool {
        try await rows(
            """
            UPDATE risk_rules SET deleted_at = \(PostgresRows.millis(now))
            WHERE id = \(id.description) AND deleted_at IS NULL RETURNING 1
            """
        ).count == 1
    }
}
