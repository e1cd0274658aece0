import CrestCore
import Foundation
import GRDB

extension SQLiteStore {
    public func createRiskRule(_ rule: RiskRule) async throws {
        try await pool.write { db in
            try db.execute(
                sql: "INSERT INTO risk_rules (id, rule, note, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                arguments: [
                    rule.id.description, rule.storedMatch, rule.note, SQLiteRows.millis(rule.createdAt),
                    rule.expiresAt.map(SQLiteRows.millis),
                ])
        }
    }

    public func riskRules() async throws -> [RiskRule] {
        try await pool.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT id, rule, note, created_at, expires_at FROM risk_rules WHERE deleted_at IS NULL ORDER BY id"
            ).compactMap { row in
                guard let id = RiskRuleID(row["id"] as String), let match = RiskRule.match(storedJSON: row["rule"])
                else { return nil }
                return RiskRule(
                    id: id, match: match, note: row["note"], createdAt: SQLiteRows.date(row["created_at"]),
                    expiresAt: (row["expires_at"] as Int64?).map(SQLiteRows.date))
            }
        }
    }

    public func deleteRiskRule(_ id: RiskRuleID, at now: Date) async throws -> Bool {
        try await pool.write { db in
            try db.execute(
                sql: "UPDATE risk_rules SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                arguments: [SQLiteRows.millis(now), id.description])
            return db.changesCount == 1
        }
    }
}
