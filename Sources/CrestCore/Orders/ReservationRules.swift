import Foundation

/// The rules of a reservation, written once and called by everyone who decides one: the stock
/// gate in memory, and both stores in their transactions, each with its own inputs. Pure: it
/// reads through the closures it is given, each only when its check is reached, and does nothing
/// else.
///
/// The checks, in order:
/// 1. the idempotency key is new (a known key names its first attempt's answer, whatever the sale
///    does now: a replay after the sale closed still finds its order);
/// 2. the sale is open at the request's time;
/// 3. the attempt was not cancelled by its key beforehand;
/// 4. the quantity is within the per-buyer limit at all (the request's own limit, from the
///    buyer's pass, or else the sale's);
/// 5. the buyer's live units plus the quantity stay within the limit;
/// 6. enough stock is available.
///
/// ```swift
/// switch try ReservationRules.decide(request, sale: sale, at: now, knownKey: { probe.placed },
///                                    cancelled: { probe.cancelled }, held: { probe.held }, available: available) {
/// case .grant: …            // reserve it
/// case .knownKey: …         // answer with the key's order
/// case .refused(let error): …
/// }
/// ```
public enum ReservationRules {
    public enum Verdict: Sendable, Hashable {
        /// Every rule holds: reserve the units.
        case grant
        /// The key has been used in this sale: its first attempt's answer stands.
        case knownKey
        case refused(OrderError)
    }

    public static func decide(
        _ request: OrderRequest, sale: Sale, at time: Date, knownKey: () throws -> Bool, cancelled: () throws -> Bool,
        held: () throws -> Int, available: Int64
    ) rethrows -> Verdict {
        precondition(request.saleID == sale.id, "a request decided against another sale")
        if try knownKey() { return .knownKey }
        switch sale.phase(at: time) {
        case .upcoming: return .refused(.saleNotOpen(startsAt: sale.startsAt))
        case .closed: return .refused(.saleClosed)
        case .open: break
        }
        if try cancelled() { return .refused(.attemptCancelled) }
        let limit = request.limit(in: sale)
        if request.quantity > limit { return .refused(.quantityAboveLimit(limit: limit)) }
        if try held() + request.quantity > limit { return .refused(.buyerLimitReached(limit: limit)) }
        guard available >= Int64(request.quantity) else { return .refused(.soldOut) }
        return .grant
    }
}
