import CrestCore
import CrestPayments
import Foundation
import Synchronization

/// The state of the simulated provider: payment intents, their idempotency keys, the events to send.
///
/// Intents move `created → processing → succeeded | failed`, and `succeeded → refunded`; every
/// change emits a webhook event to the `WebhookDispatcher`.
package final class PaymentSimulator: Sendable {
    package struct Configuration: Sendable {
        /// Where payment pages are served (the simulator's own address).
        package var publicURL: String
        package var seed: UInt64
        package var faults: SimulatorFaults

        package init(publicURL: String, seed: UInt64 = 1, faults: SimulatorFaults = .init()) {
            self.publicURL = publicURL
            self.seed = seed
            self.faults = faults
        }
    }

    package enum Failure: Error, Sendable, Hashable {
        case notFound
        /// The request does not fit the intent's state (e.g. refunding an unpaid intent).
        case conflict(String)
        /// The same idempotency key came with a different request.
        case keyReused
        case invalid(String)
    }

    private struct State {
        var intents: [String: ProviderAPI.Intent] = [:]
        var order: [String] = []
        var createKeys: [String: (request: ProviderAPI.CreateIntent, id: String)] = [:]
        var refundKeys: [String: String] = [:]
        /// When each intent reached its final money state (succeeded or refunded), for statements.
        var settled: [String: Int64] = [:]
        var publicURL: String
    }

    let random: SeededRandom
    private let state: Mutex<State>
    private let faultState: Mutex<SimulatorFaults>
    let events: WebhookDispatcher

    package init(configuration: Configuration, events: WebhookDispatcher) {
        random = SeededRandom(seed: configuration.seed)
        state = Mutex(State(publicURL: configuration.publicURL))
        faultState = Mutex(configuration.faults)
        self.events = events
        events.attach(self)
    }

    package var faults: SimulatorFaults {
        get { faultState.withLock { $0 } }
        set { faultState.withLock { $0 = newValue } }
    }

    /// Sets the address payment pages are served at (known once the server listens).
    package func setPublicURL(_ url: String) { state.withLock { $0.publicURL = url } }

    package func create(_ request: ProviderAPI.CreateIntent, key: String, now: Date = Date()) throws(Failure)
        -> ProviderAPI.Intent
    {
        guard request.amount >= 0, Currency(request.currency) != nil, !request.reference.isEmpty else {
            throw .invalid("amount must be >= 0, currency an ISO code, reference non-empty")
        }
        let result = state.withLock { state -> Result<(ProviderAPI.Intent, Bool), Failure> in
            if let known = state.createKeys[key] {
                guard known.request.amount == request.amount, known.request.currency == request.currency,
                    known.request.reference == request.reference
                else { return .failure(.keyReused) }
                return .success((state.intents[known.id]!, false))
            }
            let id = Self.newID()
            let seconds = Int64(now.timeIntervalSince1970)
            let intent = ProviderAPI.Intent(
                id: id, reference: request.reference, amount: request.amount, currency: request.currency,
                status: .created, payUrl: "\(state.publicURL)/pay/\(id)", created: seconds, updated: seconds)
            state.intents[id] = intent
            state.order.append(id)
            state.createKeys[key] = (request, id)
            return .success((intent, true))
        }
        let (intent, isNew) = try result.get()
        if isNew { events.emit(intent, at: now) }
        return intent
    }

    /// An id (of a payment, of an event) no run of the simulator gave out before — time-ordered and
    /// random, not drawn from the seed: a restarted simulator with the same `--seed` repeats its
    /// faults, never its ids (Crest binds each payment id to one order and drops an event id it has
    /// seen as a duplicate).
    static func newID(prefix: String = "pi_") -> String {
        prefix + TimeOrderedID.make().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    }

    package func intent(_ id: String) throws(Failure) -> ProviderAPI.Intent {
        guard let intent = state.withLock({ $0.intents[id] }) else { throw .notFound }
        return intent
    }

    /// The buyer pays (`succeeded`) or the payment fails (`failed`): `processing`, then the outcome,
    /// each with its webhook.
    package func simulate(_ id: String, outcome: PaymentStatus, now: Date = Date()) throws(Failure) -> ProviderAPI.Intent {
        guard outcome == .succeeded || outcome == .failed else { throw .invalid("outcome must be succeeded or failed") }
        let result = state.withLock { state -> Result<[ProviderAPI.Intent], Failure> in
            guard var intent = state.intents[id] else { return .failure(.notFound) }
            guard intent.status == .created || intent.status == .failed else {
                return .failure(.conflict("the intent is \(intent.status.rawValue)"))
            }
            let seconds = Int64(now.timeIntervalSince1970)
            intent.status = .processing
            intent.updated = seconds
            let processing = intent
            intent.status = outcome
            state.intents[id] = intent
            if outcome == .succeeded { state.settled[id] = seconds }
            return .success([processing, intent])
        }
        let changes = try result.get()
        for change in changes { events.emit(change, at: now) }
        return changes[changes.count - 1]
    }

    package func refund(_ id: String, key: String, now: Date = Date()) throws(Failure) -> ProviderAPI.Intent {
        let result = state.withLock { state -> Result<(ProviderAPI.Intent, Bool), Failure> in
            if let known = state.refundKeys[key] {
                guard known == id else { return .failure(.keyReused) }
                return .success((state.intents[id]!, false))
            }
            guard var intent = state.intents[id] else { return .failure(.notFound) }
            guard intent.status == .succeeded else {
                return .failure(.conflict("only a succeeded payment can be refunded; it is \(intent.status.rawValue)"))
            }
            intent.status = .refunded
            intent.updated = Int64(now.timeIntervalSince1970)
            state.intents[id] = intent
            state.refundKeys[key] = id
            state.settled[id] = intent.updated
            return .success((intent, true))
        }
        let (intent, isNew) = try result.get()
        if isNew { events.emit(intent, at: now) }
        return intent
    }

    /// The settlement statement of `from..<to` (unix seconds) as CSV: one row per intent that
    /// succeeded or was refunded in the period, with the configured discrepancies.
    package func statement(from: Int64, to: Int64) -> String {
        let faults = self.faults
        var rows = state.withLock { state in
            state.order.compactMap { id -> ProviderAPI.Intent? in
                guard let at = state.settled[id], at >= from, at < to else { return nil }
                return state.intents[id]
            }
        }
        let settledAt = { (intent: ProviderAPI.Intent) in intent.updated }
        var lines = [ProviderAPI.statementHeader]
        for _ in 0..<min(faults.statementMissingRows, rows.count) {
            rows.remove(at: random.upTo(rows.count - 1))
        }
        var mismatches = Set<Int>()
        while mismatches.count < min(faults.statementAmountMismatches, rows.count) {
            mismatches.insert(random.upTo(rows.count - 1))
        }
        for (index, intent) in rows.enumerated() {
            let amount = mismatches.contains(index) ? intent.amount + 1 : intent.amount
            lines.append(
                "\(intent.id),\(intent.reference),\(amount),\(intent.currency),\(intent.status.rawValue),\(settledAt(intent))")
        }
        for _ in 0..<faults.statementExtraRows {
            lines.append("\(Self.newID()),unknown-\(random.hex(8)),\(random.upTo(100_000)),CNY,succeeded,\(from)")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
