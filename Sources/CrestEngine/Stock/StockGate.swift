import CrestCore
import CrestStore
import Foundation
import Synchronization
import Tracing

/// The in-memory front of one sale's stock: it answers what it can without the store and admits
/// the rest to the batcher.
///
/// It mirrors the store's counters (`committed`, newest version wins) minus what it admitted and
/// the store has not decided yet (`pendingUnits`). From that it answers "sold out" and "limit
/// reached" from memory, and it knows every idempotency key of the sale, so a replay is never
/// mistaken for a new attempt. The store stays the authority: whatever the gate admits is decided
/// again in the store's transaction, and `settle` brings the gate back in line with the outcome.
///
/// All state sits behind one `Mutex`; no method suspends while holding it.
final class StockGate: Sendable {
    /// What the gate says about a request.
    enum Admission {
        /// New attempt, stock held for it in memory: send it to the store.
        case admitted(Ticket)
        /// The key names an order in the store (or a hash collision does): look it up.
        case knownKey
        /// Refused without the store.
        case refused(OrderError)
    }

    /// A request the gate admitted, with what settling it needs.
    struct Ticket: Sendable {
        var reservation: Reservation
        var gate: StockGate
        /// The placing request's trace, when it is recorded: the batch's span links to it.
        var trace: ServiceContext? = nil
        /// When the gate admitted it (the batch times its wait from here).
        var submittedAt: ContinuousClock.Instant? = nil
    }

    private struct InFlight {
        var buyer: String
        var quantity: Int
    }

    /// A remembered refusal in 16 bytes (see `RefusalMemory`): its request's buyer as a hash and its
    /// quantity, enough to tell a replay from the same key sent with another body, and which of the
    /// two refusals a gate remembers it was (the limit is the sale's).
    struct Refusal {
        var buyerHash: Int
        var quantity: Int32
        var limitReached: Bool

        /// `nil` for the refusals that are not remembered.
        init?(_ error: OrderError, of request: OrderRequest) {
            switch error {
            case .soldOut: limitReached = false
            case .buyerLimitReached: limitReached = true
            default: return nil
            }
            buyerHash = request.buyer.hashValue
            quantity = Int32(clamping: request.quantity)
        }

        func isSameBody(as request: OrderRequest) -> Bool {
            request.buyer.hashValue == buyerHash && Int(quantity) == request.quantity
        }

        func error(for request: OrderRequest, in sale: Sale) -> OrderError {
            limitReached ? .buyerLimitReached(limit: request.limit(in: sale)) : .soldOut
        }
    }

    private struct State {
        var committed: StockCounters
        var version: Int64
        var pendingUnits: Int64 = 0
        var holdings: ShardedDictionary<String, Int>
        var pendingByBuyer: [String: Int] = [:]
        var knownKeys: ShardedSet<Int>
        var inFlight: [String: InFlight] = [:]
        var refusals: RefusalMemory<Refusal>
        /// When an attempt last came, on the engine's clock.
        var lastUsed: Date

        var available: Int64 { committed.available - pendingUnits }

        /// The gate's promises, mirroring the store's `CHECK`s: the counters it holds are conserved
        /// (available + reserved + sold = total, none negative); the units held in memory are
        /// exactly those of the attempts in flight, and no buyer's are negative. O(attempts in
        /// flight): checked with `assert`, in debug builds and tests only.
        func verifyInvariants() -> Bool {
            precondition(committed.isConserved, "gate counters not conserved: \(committed)")
            precondition(pendingUnits >= 0, "negative units in flight: \(pendingUnits)")
            precondition(pendingByBuyer.values.allSatisfy { $0 > 0 }, "a buyer's units in flight are not positive")
            let flying = inFlight.values.reduce(0) { $0 + $1.quantity }
            precondition(Int64(flying) == pendingUnits, "units in flight \(pendingUnits), attempts hold \(flying)")
            precondition(
                pendingByBuyer.values.reduce(0, +) == flying, "buyers' units in flight differ from the attempts'")
            return true
        }
    }

    let sale: Sale
    private let state: Mutex<State>

    /// `loadedAt` (the engine's clock) counts as its last use.
    init(snapshot: GateSnapshot, refusalMemory: Int, loadedAt: Date) {
        self.sale = snapshot.sale
        self.state = Mutex(
            State(
                committed: snapshot.sale.stock, version: snapshot.version, holdings: ShardedDictionary(snapshot.holdings),
                knownKeys: ShardedSet(snapshot.idempotencyKeys.lazy.map(\.hashValue)),
                refusals: RefusalMemory(capacity: refusalMemory), lastUsed: loadedAt))
    }

    /// The newest counters the gate has seen from the store.
    var counters: StockCounters { state.withLock { $0.committed } }

    /// Decides what to do with `request` at `now`. An admitted request holds its stock in memory
    /// until `settle` or `abandon` is called with its ticket. `keyIsNew` skips the known-key check, once the store said the key names no order.
    func admit(
        _ request: OrderRequest, now: Date, keyIsNew: Bool = false,
        makeReservation: (Sale) throws -> Reservation
    ) throws -> Admission {
        try state.withLock { state in
            switch decide(request, now: now, keyIsNew: keyIsNew, in: &state) {
            case .refused(let error, let remembered):
                if !remembered { remember(error, for: request, in: &state) }
                return .refused(error)
            case .knownKey: return .knownKey
            case .grant: break
            }
            let key = request.idempotencyKey
            let reservation = try makeReservation(sale)
            state.pendingUnits += Int64(request.quantity)
            state.pendingByBuyer[request.buyer, default: 0] += request.quantity
            state.inFlight[key] = InFlight(buyer: request.buyer, quantity: request.quantity)
            assert(state.verifyInvariants())
            return .admitted(Ticket(reservation: reservation, gate: self))
        }
    }

    /// The refusal `admit` would answer `request` with when it is the sale's sold out or the
    /// buyer's limit reached — remembered for its key as `admit` remembers it; `nil`, changing
    /// nothing, for anything else (admitted, a key the gate knows, an attempt in flight, another
    /// refusal). For answers that must not wait (`Engine.refusalFromMemory`).
    func soldOutOrLimitRefusal(_ request: OrderRequest, now: Date) -> OrderError? {
        state.withLock { state in
            guard case .refused(let error, let remembered) = decide(request, now: now, keyIsNew: false, in: &state)
            else { return nil }
            switch error {
            case .soldOut, .buyerLimitReached:
                if !remembered { remember(error, for: request, in: &state) }
                return error
            default: return nil
            }
        }
    }

    private enum Decision {
        /// `remembered`: the key's refusal came from memory (a replay), nothing to remember again.
        case refused(OrderError, remembered: Bool)
        case knownKey
        case grant
    }

    /// What the gate says of `request`, changing nothing but the time of its last use.
    private func decide(_ request: OrderRequest, now: Date, keyIsNew: Bool, in state: inout State) -> Decision {
        state.lastUsed = max(state.lastUsed, now)
        let key = request.idempotencyKey
        if let flying = state.inFlight[key] {
            let same = request.sameBody(buyer: flying.buyer, quantity: flying.quantity)
            return .refused(same ? .requestInProgress : .idempotencyKeyReused, remembered: true)
        }
        if let refusal = state.refusals[key] {
            let error = refusal.isSameBody(as: request) ? refusal.error(for: request, in: sale) : .idempotencyKeyReused
            return .refused(error, remembered: true)
        }
        // Cancelled attempts are known to the store only: it refuses them when they get there.
        let verdict = ReservationRules.decide(
            request, sale: sale, at: now, knownKey: { !keyIsNew && state.knownKeys.contains(key.hashValue) },
            cancelled: { false },
            held: { state.holdings[request.buyer, default: 0] + state.pendingByBuyer[request.buyer, default: 0] },
            available: state.available)
        switch verdict {
        case .knownKey: return .knownKey
        case .refused(let error): return .refused(error, remembered: false)
        case .grant: return .grant
        }
    }

    /// Applies the store's decisions for this gate's tickets of one batch, and the counters the
    /// batch left, in one step, so no admission sees a half-settled gate.
    func settle(_ decided: [(ticket: Ticket, outcome: ReservationOutcome)], counters: CounterSnapshot?) {
        state.withLock { state in
            for (ticket, outcome) in decided {
                let request = ticket.reservation.request
                release(request, in: &state)
                switch outcome {
                case .reserved:
                    state.knownKeys.insert(request.idempotencyKey.hashValue)
                    state.holdings[request.buyer, default: 0] += request.quantity
                case .duplicate:
                    state.knownKeys.insert(request.idempotencyKey.hashValue)
                case .refused(let error):
                    remember(error, for: request, in: &state)
                }
            }
            if let counters { apply(counters, to: &state) }
            assert(state.verifyInvariants())
        }
    }

    /// Gives back what these tickets held: their batch failed and nothing of it is known to be durable.
    func abandon(_ tickets: [Ticket]) {
        state.withLock { state in
            for ticket in tickets { release(ticket.reservation.request, in: &state) }
            assert(state.verifyInvariants())
        }
    }

    /// Records that a live order of `buyer` ended and its units went back to the sale.
    ///
    /// The release may be seen before the settle of the reservation it undoes (an attempt cancelled
    /// by its key while its batch commits), so holdings may dip below zero for that moment rather
    /// than being clamped, which would leave the buyer holding a unit after both. The store checks
    /// limits again, so a briefly low count in memory cannot let a buyer past the limit.
    func released(buyer: String, quantity: Int, counters: CounterSnapshot) {
        state.withLock { state in
            let left = state.holdings[buyer, default: 0] - quantity
            state.holdings[buyer] = left != 0 ? left : nil
            apply(counters, to: &state)
            assert(state.verifyInvariants())
        }
    }

    /// Takes the store's count of what `buyer` holds when it is lower than the gate's — another node
    /// ended one of the buyer's orders, and this gate heard only that stock came back — and forgets
    /// a remembered "limit reached" for `key`, so its request can be decided again. Returns whether
    /// the count was lowered. Never raises it: the store may not have counted an order this gate
    /// is settling right now, and a count too low costs only a refusal by the store instead of by memory.
    func lowerHoldings(of buyer: String, to held: Int, forgetting key: String) -> Bool {
        state.withLock { state in
            guard held < state.holdings[buyer, default: 0] else { return false }
            state.holdings[buyer] = held > 0 ? held : nil
            if state.refusals[key]?.limitReached == true { state.refusals.forget(key) }
            return true
        }
    }

    /// Whether no attempt came since `cutoff` and none is in flight: the gate can be dropped, and
    /// loaded from the store again when asked.
    func isIdle(since cutoff: Date) -> Bool {
        state.withLock { $0.lastUsed < cutoff && $0.inFlight.isEmpty && $0.pendingUnits == 0 }
    }

    /// Takes newer counters from the store (e.g. after a payment moved units from reserved to sold).
    func observe(_ counters: CounterSnapshot) {
        state.withLock { apply(counters, to: &$0) }
    }

    /// Counters from the store are conserved, or the store broke its own `CHECK`: cheap to check
    /// always.
    private func apply(_ snapshot: CounterSnapshot, to state: inout State) {
        precondition(snapshot.counters.isConserved, "the store sent counters that are not conserved: \(snapshot.counters)")
        guard snapshot.version > state.version else { return }
        state.version = snapshot.version
        state.committed = snapshot.counters
    }

    /// Only an attempt in flight can be released: its ticket is settled or abandoned once.
    private func release(_ request: OrderRequest, in state: inout State) {
        let flying = state.inFlight[request.idempotencyKey]
        precondition(
            flying?.buyer == request.buyer && flying?.quantity == request.quantity,
            "released an attempt that was not in flight (a ticket settled twice?)")
        state.pendingUnits -= Int64(request.quantity)
        let left = state.pendingByBuyer[request.buyer, default: 0] - request.quantity
        state.pendingByBuyer[request.buyer] = left > 0 ? left : nil
        state.inFlight[request.idempotencyKey] = nil
    }

    /// Keeps a sold-out or limit refusal so that a replay of its key gets the same answer (the
    /// oldest are forgotten beyond the memory's capacity; a forgotten key is simply decided again).
    private func remember(_ error: OrderError, for request: OrderRequest, in state: inout State) {
        guard let refusal = Refusal(error, of: request) else { return }
        state.refusals.remember(refusal, for: request.idempotencyKey)
    }
}
