import CrestCore
import CrestStore
import Foundation
import Logging

/// No risk rule has this id (or it was deleted).
package struct RiskRuleNotFound: DomainError, Hashable {
    package init() {}
}

extension Engine {
    /// Adds a risk rule, checked (`RiskRule.issues`; addresses are the caller's to check).
    package func createRiskRule(_ match: RiskRule.Match, note: String, expiresAt: Date?) async throws -> RiskRule {
        let now = clock()
        let rule = RiskRule(id: .make(now: now), match: match, note: note, createdAt: now, expiresAt: expiresAt)
        let issues = rule.issues(now: now)
        guard issues.isEmpty else { throw ValidationError(issues: issues) }
        try await withStore("create risk rule") { try await store.createRiskRule(rule) }
        logger.notice("risk rule created", metadata: ["rule": "\(rule.id)", "match": "\(rule.match)"])
        return rule
    }

    /// The risk rules not deleted, oldest first (expired ones included).
    package func riskRules() async throws -> [RiskRule] {
        try await withStore("read risk rules") { try await store.riskRules() }
    }

    package func riskRule(_ id: RiskRuleID) async throws -> RiskRule {
        guard let rule = try await riskRules().first(where: { $0.id == id }) else { throw RiskRuleNotFound() }
        return rule
    }

    package func deleteRiskRule(_ id: RiskRuleID) async throws {
        let deleted = try await withStore("delete risk rule") { try await store.deleteRiskRule(id, at: clock()) }
        guard deleted else { throw RiskRuleNotFound() }
        logger.notice("risk rule deleted", metadata: ["rule": "\(id)"])
    }
}
