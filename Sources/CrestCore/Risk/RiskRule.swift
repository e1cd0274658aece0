import Foundation

public enum RiskRuleKind {}
public typealias RiskRuleID = Identifier<RiskRuleKind>

/// An operator's plain rule at admission (no model): a buyer or an address denied, or a velocity
/// that puts a buyer or an address in a cool-down. Stored durably, evaluated in memory on every
/// node; a refused attempt is not processed (`403`, its key unused).
public struct RiskRule: Sendable, Hashable {
    public enum Match: Sendable, Hashable, Codable {
        /// Every attempt of this buyer.
        case buyer(String)
        /// Every attempt from this address or network (an address, or a CIDR such as
        /// `203.0.113.0/24`; the client address as `--trusted-proxies` makes it).
        case address(String)
        /// More than `limit` attempts (or distinct idempotency keys) from one buyer or address
        /// within `windowSeconds`: refused, and every attempt of it for `coolDownSeconds`.
        case velocity(Velocity)
    }

    public struct Velocity: Sendable, Hashable, Codable {
        public enum Scope: String, Sendable, Hashable, Codable, CaseIterable {
            case buyer, address
        }

        public enum Measure: String, Sendable, Hashable, Codable, CaseIterable {
            /// Every attempt counts.
            case attempts
            /// Only new idempotency keys count: a buyer retrying one attempt is not a bot trying many.
            case distinctKeys = "distinct-keys"
        }

        public static let limitRange: ClosedRange<Int> = 1...1_000_000
        /// Distinct keys are remembered per buyer or address until the limit: it stays small.
        public static let distinctKeysLimitRange: ClosedRange<Int> = 1...1_000
        public static let windowRange: ClosedRange<Int> = 1...86_400
        public static let coolDownRange: ClosedRange<Int> = 1...604_800

        public var scope: Scope
        public var measure: Measure
        public var limit: Int
        public var windowSeconds: Int
        public var coolDownSeconds: Int

        public init(scope: Scope, measure: Measure, limit: Int, windowSeconds: Int, coolDownSeconds: Int) {
            self.scope = scope
            self.measure = measure
            self.limit = limit
            self.windowSeconds = windowSeconds
            self.coolDownSeconds = coolDownSeconds
        }
    }

    public static let noteMaxLength = 500

    public var id: RiskRuleID
    public var match: Match
    /// Why the rule exists, for the next operator.
    public var note: String
    public var createdAt: Date
    /// When the rule stops applying; `nil`: until deleted.
    public var expiresAt: Date?

    public init(id: RiskRuleID, match: Match, note: String = "", createdAt: Date, expiresAt: Date? = nil) {
        self.id = id
        self.match = match
        self.note = note
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }

    /// Whether the rule applies at `now`.
    public func isActive(at now: Date) -> Bool { expiresAt.map { now < $0 } ?? true }

    /// What can be checked of a rule without knowing addresses (the HTTP layer parses those):
    /// the buyer, the velocity's numbers, the note, the expiry.
    public func issues(now: Date) -> [ValidationError.Issue] {
        var issues: [ValidationError.Issue] = []
        switch match {
        case .buyer(let buyer):
            issues += TextRule(maxLength: OrderRequest.buyerMaxLength).issues(buyer, field: "buyer")
        case .address:
            break
        case .velocity(let velocity):
            let limits = velocity.measure == .distinctKeys ? Velocity.distinctKeysLimitRange : Velocity.limitRange
            if !limits.contains(velocity.limit) {
                issues.append(
                    .init(
                        field: "limit",
                        message: "must be between 1 and \(limits.upperBound) for \(velocity.measure.rawValue)"))
            }
            if !Velocity.windowRange.contains(velocity.windowSeconds) {
                issues.append(
                    .init(field: "windowSeconds", message: "must be between 1 and \(Velocity.windowRange.upperBound)"))
            }
            if !Velocity.coolDownRange.contains(velocity.coolDownSeconds) {
                issues.append(
                    .init(
                        field: "coolDownSeconds", message: "must be between 1 and \(Velocity.coolDownRange.upperBound)"))
            }
        }
        if note.count > Self.noteMaxLength {
            issues.append(.init(field: "note", message: "must be at most \(Self.noteMaxLength) characters"))
        }
        if let expiresAt, expiresAt <= now { issues.append(.init(field: "expiresAt", message: "must be in the future")) }
        return issues
    }

    /// The stores' `rule` column: the match as JSON.
    public var storedMatch: String {
        String(decoding: (try? JSONEncoder().encode(match)) ?? Data(), as: UTF8.self)
    }

    /// Reads the stores' `rule` column; `nil` for text this version cannot read.
    public static func match(storedJSON: String) -> Match? {
        try? JSONDecoder().decode(Match.self, from: Data(storedJSON.utf8))
    }
}
