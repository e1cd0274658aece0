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

    struct State {
        var intents: [String: ProviderAPI.Intent] = [:]
        /// Every intent's id, in id order (ids are time-ordered, so this is creation order).
        var order: [String] = []
        /// Every intent's id by its reference, in creation order: the charges made for one order.
        var byReference: [String: [String]] = [:]
        var createKeys: [String: (request: ProviderAPI.CreateIntent, id: String)] = [:]
        var refundKeys: [String: String] = [:]
        /// When each intent's charge settled (it succeeded), and when its refund did.
        var settled: [String: Int64] = [:]
        var refunded: [String: Int64] = [:]
        /// How the statement shows a charge, when not as it is (decided once: every statement agrees).
        var shown: [String: ShownAs] = [:]
        /// What the simulator did on purpose, in order.
        var injected: [ProviderAPI.InjectedDifference] = []
        var publicURL: String
    }

    enum ShownAs {
        case amountOff, otherCurrency, missing
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
            state.remember(intent)
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

    /// Every intent made for `reference` (an order), oldest first: one per order unless a payment
    /// was created twice under different idempotency keys, or a charge was duplicated.
    package func intents(reference: String) -> [ProviderAPI.Intent] {
        state.withLock { state in (state.byReference[reference] ?? []).compactMap { state.intents[$0] } }
    }

    /// The buyer pays (`succeeded`) or the payment fails (`failed`): `processing`, then the outcome,
    /// each with its webhook.
    package func simulate(_ id: String, outcome: PaymentStatus, now: Date = Date()) throws(Failure) -> ProviderAPI.Intent {
        guard outcome == .succeeded || outcome == .failed else { throw .invalid("outcome must be succeeded or failed") }
        let faults = self.faults
        let result = state.withLock { state -> Result<(told: [ProviderAPI.Intent], answer: ProviderAPI.Intent), Failure> in
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
            guard outcome == .succeeded else { return .success(([processing, intent], intent)) }
            state.settled[id] = seconds
            let told = settle(intent, in: &state, faults: faults, at: seconds)
            return .success(([processing] + told, intent))
        }
        let (told, answer) = try result.get()
        for change in told { events.emit(change, at: now) }
        return answer
    }

    /// A success's differences, drawn once (see `SimulatorFaults`); the changes to tell by webhook.
    private func settle(_ intent: ProviderAPI.Intent, in state: inout State, faults: SimulatorFaults, at seconds: Int64)
        -> [ProviderAPI.Intent]
    {
        func inject(_ kind: ProviderAPI.InjectedDifference.Kind, _ payment: ProviderAPI.Intent) {
            state.injected.append(.init(kind: kind, paymentId: payment.id, reference: payment.reference))
        }
        var told = [intent]
        let draw = random.unit()
        var bound = 0.0
        func drawn(_ rate: Double) -> Bool {
            defer { bound += rate }
            return rate > 0 && draw >= bound && draw < bound + rate
        }
        if drawn(faults.successWebhookLossRate) {
            told = []
            inject(.webhookLost, intent)
        } else if drawn(faults.failAfterSuccessRate) {
            state.intents[intent.id]?.status = .failed
            inject(.failedAfterSuccess, intent)
        } else if drawn(faults.statementAmountRate) {
            state.shown[intent.id] = .amountOff
            inject(.amountDiffers, intent)
        } else if drawn(faults.statementCurrencyRate) {
            state.shown[intent.id] = .otherCurrency
            inject(.currencyDiffers, intent)
        } else if drawn(faults.statementMissingRate) {
            state.shown[intent.id] = .missing
            inject(.missingFromStatement, intent)
        }
        if random.chance(faults.duplicateChargeRate) {
            let second = charge(reference: intent.reference, like: intent, in: &state, at: seconds)
            inject(.duplicateCharge, second)
        }
        if random.chance(faults.orphanChargeRate) {
            let orphan = charge(reference: "unknown-\(random.hex(12))", like: intent, in: &state, at: seconds)
            inject(.orphanCharge, orphan)
        }
        return told
    }

    /// A succeeded charge nobody asked for (told by no webhook).
    private func charge(reference: String, like intent: ProviderAPI.Intent, in state: inout State, at seconds: Int64)
        -> ProviderAPI.Intent
    {
        let id = Self.newID()
        let charge = ProviderAPI.Intent(
            id: id, reference: reference, amount: intent.amount, currency: intent.currency, status: .succeeded,
            payUrl: nil, created: seconds, updated: seconds)
        state.intents[id] = charge
        state.remember(charge)
        state.settled[id] = seconds
        return charge
    }

    /// What the simulator injected, in order: the truth a reconciliation is checked against.
    package var injected: [ProviderAPI.InjectedDifference] { state.withLock { $0.injected } }

    package func refund(_ id: String, key: String, now: Date = Date()) throws(Failure) -> ProviderAPI.Intent {
        let lost = random.chance(faults.refundLossRate)
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
            // A payment left out of the statement cannot show its refund lost: not lost, then.
            if lost, state.shown[id] != .missing {
                // Answered as made, and never made: the ledger keeps the charge, and the key is
                // forgotten, so asking again with it makes the refund.
                state.injected.append(.init(kind: .refundLost, paymentId: id, reference: intent.reference))
                return .success((intent, false))
            }
            state.intents[id] = intent
            state.refundKeys[key] = id
            state.refunded[id] = intent.updated
            // A refund lost before and asked again is made now: that loss is no difference any more.
            state.injected.removeAll { $0.kind == .refundLost && $0.paymentId == id }
            return .success((intent, true))
        }
        let (intent, isNew) = try result.get()
        if isNew { events.emit(intent, at: now) }
        return intent
    }

    /// The statement of the payments created in `from..<to` (Unix seconds), in line id order: a
    /// charge line for every payment that succeeded (with its status now), then a refund line for
    /// every refund made; shown with the differences drawn for them.
    package func statement(from: Int64, to: Int64) -> [ProviderAPI.StatementLine] {
        statementPage(from: from, to: to, after: "", limit: .max).lines
    }

    /// A page of the statement: at most `limit` lines after the line id `after`, and the id to go
    /// on after (`nil` on the last page). A page costs its own lines, not the whole ledger's:
    /// charges (`ch_` + payment id) come in payment id order, refunds (`re_` + payment id) after.
    package func statementPage(from: Int64, to: Int64, after: String, limit: Int) -> (lines: [ProviderAPI.StatementLine], next: String?) {
        state.withLock { state in
            var lines: [ProviderAPI.StatementLine] = []
            func inWindow(_ intent: ProviderAPI.Intent) -> Bool { intent.created >= from && intent.created < to }
            /// The payment id to start after for lines with `prefix` (`nil`: `after` is past them all).
            func start(_ prefix: String) -> Int? {
                let id = after.hasPrefix(prefix) ? String(after.dropFirst(prefix.count)) : (after < prefix ? "" : nil)
                return id.map { id in state.order.firstIndex(after: id) }
            }
            if let first = start("ch_") {
                for id in state.order[first...] {
                    guard lines.count <= limit else { break }
                    guard let intent = state.intents[id], inWindow(intent), let settled = state.settled[id] else { continue }
                    let shown = state.shown[id]
                    if shown == .missing { continue }
                    let amount = shown == .amountOff ? intent.amount + 1 : intent.amount
                    let currency = shown == .otherCurrency ? (intent.currency == "USD" ? "EUR" : "USD") : intent.currency
                    lines.append(
                        .init(
                            id: "ch_\(id)", kind: .charge, paymentId: id, reference: intent.reference, amount: amount,
                            fee: Self.fee(of: amount), currency: currency, status: intent.status, created: intent.created,
                            settled: settled))
                }
            }
            if lines.count <= limit, let first = start("re_") {
                for id in state.order[first...] {
                    guard lines.count <= limit else { break }
                    guard let intent = state.intents[id], inWindow(intent), let refunded = state.refunded[id] else { continue }
                    lines.append(
                        .init(
                            id: "re_\(id)", kind: .refund, paymentId: id, reference: intent.reference, amount: intent.amount,
                            fee: 0, currency: intent.currency, status: .refunded, created: intent.created, settled: refunded))
                }
            }
            guard lines.count > limit else { return (lines, nil) }
            let shown = Array(lines.prefix(limit))
            return (shown, shown.last?.id)
        }
    }

    /// The provider's fee on a charge: 0.6%, rounded to the minor unit.
    static func fee(of amount: Int64) -> Int64 { (amount * 6 + 500) / 1000 }
}

extension PaymentSimulator.State {
    /// Records a new intent's id, keeping `order` in id order (ids are made in order; one that is
    /// not goes to its place), and under its reference.
    mutating func remember(_ intent: ProviderAPI.Intent) {
        let id = intent.id
        byReference[intent.reference, default: []].append(id)
        if let last = order.last, last > id {
            order.insert(id, at: order.firstIndex(after: id))
        } else {
            order.append(id)
        }
    }
}

extension [String] {
    /// In a sorted array, the index of the first element greater than `value` (binary search).
    func firstIndex(after value: String) -> Int {
        var (low, high) = (0, count)
        while low < high {
            let middle = (low + high) / 2
            if self[middle] > value { high = middle } else { low = middle + 1 }
        }
        return low
    }
}
