import CrestCore
import CrestEngine
import Foundation
import HTTPTypes
import Hummingbird

/// `/v1/risk-rules`: operators deny buyers and addresses and set velocity rules; every node
/// applies them to order attempts (`RiskGate`).
struct RiskRuleRoutes {
    let engine: Engine
    let gate: RiskGate

    func add(to router: Router<CrestRequestContext>, admin: AdminAuthMiddleware<CrestRequestContext>) {
        router.group("v1/risk-rules")
            .add(middleware: admin)
            .post(use: create)
            .get(use: list)
            .get("{ruleID}", use: show)
            .delete("{ruleID}", use: delete)
    }

    /// `201` with the rule; it applies on this node from the answer on, on others within 2 s.
    @Sendable func create(_ request: Request, context: CrestRequestContext) async throws -> EditedResponse<RiskRuleBody> {
        let body = try await request.decodeJSON(as: CreateRiskRuleBody.self, context: context)
        let rule = try await engine.createRiskRule(try body.match(), note: body.note ?? "", expiresAt: body.expiresAt)
        try await gate.reload()
        return EditedResponse(
            status: .created, headers: [.location: "/v1/risk-rules/\(rule.id)"], response: RiskRuleBody(rule, now: Date()))
    }

    @Sendable func list(_ request: Request, context: CrestRequestContext) async throws -> RiskRuleListBody {
        let now = Date()
        return RiskRuleListBody(rules: try await engine.riskRules().map { RiskRuleBody($0, now: now) })
    }

    @Sendable func show(_ request: Request, context: CrestRequestContext) async throws -> RiskRuleBody {
        RiskRuleBody(try await engine.riskRule(try ruleID(context)), now: Date())
    }

    @Sendable func delete(_ request: Request, context: CrestRequestContext) async throws -> Response {
        try await engine.deleteRiskRule(try ruleID(context))
        try await gate.reload()
        return Response(status: .noContent)
    }

    private func ruleID(_ context: CrestRequestContext) throws -> RiskRuleID {
        guard let raw = context.parameters.get("ruleID"), let id = RiskRuleID(raw) else { throw RiskRuleNotFound() }
        return id
    }
}

/// `POST /v1/risk-rules` body: `type` and the fields of that type.
struct CreateRiskRuleBody: Decodable {
    enum Kind: String, Decodable {
        case denyBuyer = "deny-buyer"
        case denyAddress = "deny-address"
        case velocity
    }

    var type: Kind
    var buyer: String?
    var address: String?
    var scope: RiskRule.Velocity.Scope?
    var measure: RiskRule.Velocity.Measure?
    var limit: Int?
    var windowSeconds: Int?
    var coolDownSeconds: Int?
    var note: String?
    var expiresAt: Date?

    /// What the rule matches; every missing or malformed field is reported at once.
    func match() throws -> RiskRule.Match {
        var issues: [ValidationError.Issue] = []
        func required<T>(_ value: T?, _ field: String) -> T? {
            if value == nil { issues.append(.init(field: field, message: "is required for \(type.rawValue)")) }
            return value
        }
        let match: RiskRule.Match?
        switch type {
        case .denyBuyer:
            match = required(buyer, "buyer").map { .buyer($0) }
        case .denyAddress:
            if let text = required(address, "address") {
                if let network = CIDR(text) {
                    match = .address(network.description)
                } else {
                    issues.append(.init(field: "address", message: "must be an address or a CIDR such as 203.0.113.0/24"))
                    match = nil
                }
            } else {
                match = nil
            }
        case .velocity:
            let scope = required(scope, "scope")
            let measure = required(measure, "measure")
            let limit = required(limit, "limit")
            let window = required(windowSeconds, "windowSeconds")
            let coolDown = required(coolDownSeconds, "coolDownSeconds")
            if let scope, let measure, let limit, let window, let coolDown {
                if scope == .address, measure == .distinctKeys {
                    issues.append(.init(field: "measure", message: "distinct-keys counts a buyer's keys: use scope buyer"))
                }
                match = .velocity(
                    .init(scope: scope, measure: measure, limit: limit, windowSeconds: window, coolDownSeconds: coolDown))
            } else {
                match = nil
            }
        }
        guard issues.isEmpty, let match else { throw ValidationError(issues: issues) }
        return match
    }
}

/// A risk rule as the API shows it.
struct RiskRuleBody: Codable, ResponseEncodable {
    var id: RiskRuleID
    var type: String
    var buyer: String?
    var address: String?
    var scope: RiskRule.Velocity.Scope?
    var measure: RiskRule.Velocity.Measure?
    var limit: Int?
    var windowSeconds: Int?
    var coolDownSeconds: Int?
    var note: String
    var createdAt: Timestamp
    var expiresAt: Timestamp?
    /// Whether it applies now (not expired).
    var active: Bool

    init(_ rule: RiskRule, now: Date) {
        id = rule.id
        switch rule.match {
        case .buyer(let buyer):
            type = "deny-buyer"
            self.buyer = buyer
        case .address(let address):
            type = "deny-address"
            self.address = address
        case .velocity(let velocity):
            type = "velocity"
            scope = velocity.scope
            measure = velocity.measure
            limit = velocity.limit
            windowSeconds = velocity.windowSeconds
            coolDownSeconds = velocity.coolDownSeconds
        }
        note = rule.note
        createdAt = Timestamp(rule.createdAt)
        expiresAt = rule.expiresAt.map(Timestamp.init)
        active = rule.isActive(at: now)
    }
}

struct RiskRuleListBody: Codable, ResponseEncodable {
    var rules: [RiskRuleBody]
}
