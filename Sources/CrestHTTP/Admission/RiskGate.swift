import CrestCore
import CrestEngine
import Foundation
import Metrics
import Synchronization

/// An attempt refused by a risk rule: `403 risk-refused`; with `retryAfter` while a velocity's
/// cool-down lasts. The attempt was not processed (its key unused).
struct RiskRefused: Error, Sendable, Hashable {
    var rule: RiskRuleID
    var retryAfter: Int?
}

/// Applies the operators' risk rules to order attempts, from memory: the rules are read from the
/// store at the first attempt, again in the background once older than `refresh` (so a rule
/// made on another node applies here within it), and at once after a change made here.
/// Velocity counts live in a `BoundedMap`, as the rate limiter's buckets do.
package final class RiskGate: Sendable {
    static let refresh: Duration = .seconds(2)

    /// The rules, ready to match.
    struct Rules: Sendable {
        var buyers: [String: (rule: RiskRuleID, until: Date?)] = [:]
        var networks: [(network: CIDR, rule: RiskRuleID, until: Date?)] = []
        var velocities: [(velocity: RiskRule.Velocity, rule: RiskRuleID, until: Date?)] = []

        init(_ rules: [RiskRule] = []) {
            for rule in rules {
                switch rule.match {
                case .buyer(let buyer): buyers[buyer] = (rule.id, rule.expiresAt)
                case .address(let text):
                    // Checked when created; a row this version cannot read matches nothing.
                    if let network = CIDR(text) { networks.append((network, rule.id, rule.expiresAt)) }
                case .velocity(let velocity): velocities.append((velocity, rule.id, rule.expiresAt))
                }
            }
        }
    }

    private struct Loaded {
        var rules: Rules?
        var at: ContinuousClock.Instant = .now
        var reloading = false
        /// Of the latest read started: an older read that ends later must not undo a newer one.
        var generation = 0
    }

    private struct WindowKey: Hashable, Sendable {
        var rule: RiskRuleID
        var subject: String
    }

    /// One subject's count in one velocity rule's current window.
    private struct Window {
        var start: Date
        var count = 0
        var keys: Set<Int> = []
        var coolDownUntil: Date?
    }

    private let engine: Engine
    private let clock: any CrestClock
    private let loaded = Mutex(Loaded())
    private let windows: BoundedMap<WindowKey, Window>
    private let refusals: [String: Counter] = Dictionary(
        uniqueKeysWithValues: ["buyer", "address", "velocity"].map {
            ($0, Counter(label: "crest_risk_refusals_total", dimensions: [("rule", $0)]))
        })

    package init(engine: Engine, clock: any CrestClock, trackedKeys: Int) {
        self.engine = engine
        self.clock = clock
        windows = BoundedMap(capacity: trackedKeys)
    }

    /// Reads the rules from the store now.
    func reload() async throws {
        let generation = loaded.withLock { loaded in
            loaded.generation += 1
            return loaded.generation
        }
        do {
            let rules = Rules(try await engine.riskRules())
            loaded.withLock { loaded in
                // An older read still serves when nothing is loaded yet; the newer one follows.
                guard loaded.generation == generation || loaded.rules == nil else { return }
                loaded.rules = rules
                loaded.at = .now
                if loaded.generation == generation { loaded.reloading = false }
            }
        } catch {
            loaded.withLock { $0.reloading = false }
            throw error
        }
    }

    private func rules() async throws -> Rules {
        let (rules, refresh) = loaded.withLock { loaded -> (Rules?, Bool) in
            guard let rules = loaded.rules else { return (nil, false) }
            guard !loaded.reloading, ContinuousClock.now - loaded.at >= Self.refresh else { return (rules, false) }
            loaded.reloading = true
            return (rules, true)
        }
        if refresh { Task { try? await self.reload() } }
        if let rules { return rules }
        try await reload()
        return loaded.withLock { $0.rules } ?? Rules()
    }

    /// Whether no rule can refuse or count an attempt now: the rules were read within the refresh
    /// interval and there are none. An answer made without `check` (`ChannelOrders`) needs it: while
    /// the rules are older, the route reads them again.
    var isQuiet: Bool {
        loaded.withLock { loaded in
            guard let rules = loaded.rules, ContinuousClock.now - loaded.at < Self.refresh else { return false }
            return rules.buyers.isEmpty && rules.networks.isEmpty && rules.velocities.isEmpty
        }
    }

    /// Refuses an attempt from a denied address, or one whose address is in a velocity's cool-down.
    func check(address: String?) async throws {
        guard let address else { return }
        let rules = try await rules()
        guard !rules.networks.isEmpty || !rules.velocities.isEmpty else { return }
        let now = clock.now()
        if let bytes = CIDR.address(address) {
            for entry in rules.networks where entry.until.map({ now < $0 }) ?? true && entry.network.contains(bytes) {
                throw refused("address", RiskRefused(rule: entry.rule))
            }
        }
        try count(address, key: nil, scope: .address, rules: rules, at: now)
    }

    /// Refuses an attempt of a denied buyer, or one whose buyer is in a velocity's cool-down.
    func check(buyer: String, key: String) async throws {
        let rules = try await rules()
        guard !rules.buyers.isEmpty || !rules.velocities.isEmpty else { return }
        let now = clock.now()
        if let entry = rules.buyers[buyer], entry.until.map({ now < $0 }) ?? true {
            throw refused("buyer", RiskRefused(rule: entry.rule))
        }
        try count(buyer, key: key, scope: .buyer, rules: rules, at: now)
    }

    /// Counts the attempt in every velocity rule of `scope`; refuses it when one is past its limit.
    private func count(
        _ subject: String, key: String?, scope: RiskRule.Velocity.Scope, rules: Rules, at now: Date
    ) throws {
        for entry in rules.velocities where entry.velocity.scope == scope && (entry.until.map { now < $0 } ?? true) {
            let velocity = entry.velocity
            let window = TimeInterval(velocity.windowSeconds)
            let over = { (window: Window) in window.coolDownUntil.map { now < $0 } ?? false }
            let expendable = { (stored: Window) in !over(stored) && now >= stored.start + window }
            let retryAfter = windows.withEntry(WindowKey(rule: entry.rule, subject: subject), expendable: expendable) {
                stored -> Int? in
                if let current = stored, over(current), let until = current.coolDownUntil {
                    return max(1, Int(until.timeIntervalSince(now).rounded(.up)))
                }
                var current = stored.flatMap { now < $0.start + window && $0.coolDownUntil == nil ? $0 : nil } ?? Window(start: now)
                defer { stored = current }
                switch velocity.measure {
                case .attempts: current.count += 1
                case .distinctKeys:
                    if let key, current.keys.insert(key.hashValue).inserted { current.count += 1 }
                }
                guard current.count > velocity.limit else { return nil }
                current.coolDownUntil = now + TimeInterval(velocity.coolDownSeconds)
                current.keys = []
                return velocity.coolDownSeconds
            }
            if let retryAfter { throw refused("velocity", RiskRefused(rule: entry.rule, retryAfter: retryAfter)) }
        }
    }

    private func refused(_ kind: String, _ refusal: RiskRefused) -> RiskRefused {
        refusals[kind]?.increment()
        return refusal
    }
}
