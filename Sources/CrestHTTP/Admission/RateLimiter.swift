import CrestCore
import Foundation
import HTTPTypes
import Hummingbird
import Metrics

/// The rate limits of order attempts, each a token bucket per key of its scope, and the set-up
/// they share. `nil`: no limit in that scope.
package struct AdmissionLimits: Sendable {
    /// Per buyer (the pass's subject, or the body's buyer with passes off).
    package var perBuyer: RateLimit? = RateLimit(rate: 10, burst: 20)
    /// Per client address (see `ClientAddresses`).
    package var perAddress: RateLimit?
    /// Per sale: a ceiling on a hot sale's attempts, whoever sends them.
    package var perSale: RateLimit?
    package var trustedProxies: [CIDR] = []
    /// Keys each scope tracks at most (`TokenBuckets`).
    package var trackedKeys = 200_000

    package init() {}

    /// No limits at all.
    package static let none: AdmissionLimits = {
        var limits = AdmissionLimits()
        limits.perBuyer = nil
        return limits
    }()
}

/// An attempt over a rate limit: `429` with `Retry-After`. Its idempotency key was not looked at,
/// so the same attempt sent again later is processed as if new.
struct RateLimited: Error, Sendable, Hashable {
    var scope: String
    var limit: RateLimit
    var retryAfter: Int
}

/// Applies `AdmissionLimits` to order attempts: the address first (before a pass is verified, so
/// a flood from one address costs no signature checks), then the buyer and the sale.
package final class RateLimiter: Sendable {
    static let refusalsLabel = "crest_rate_limited_total"

    private let limits: AdmissionLimits
    private let addresses: ClientAddresses
    private let clock: any CrestClock
    private let buyers: TokenBuckets<String>
    private let addressBuckets: TokenBuckets<String>
    private let sales: TokenBuckets<SaleID>
    private let refusals: [String: Counter]

    package init(limits: AdmissionLimits, clock: any CrestClock) {
        self.limits = limits
        self.clock = clock
        addresses = ClientAddresses(trustedProxies: limits.trustedProxies)
        buyers = TokenBuckets(capacity: limits.trackedKeys)
        addressBuckets = TokenBuckets(capacity: limits.trackedKeys)
        // Sales are few; their buckets need no more room than this.
        sales = TokenBuckets(capacity: 16 * 1024)
        refusals = Dictionary(
            uniqueKeysWithValues: ["buyer", "address", "sale"].map {
                ($0, Counter(label: Self.refusalsLabel, dimensions: [("scope", $0)]))
            })
    }

    /// The client's address (`ClientAddresses`); `nil` without a socket (router tests).
    func clientAddress(of request: Request, peer: String?) -> String? {
        clientAddress(peer: peer, headers: request.headers)
    }

    /// The client's address of a request head (`ClientAddresses`).
    func clientAddress(peer: String?, headers: HTTPFields) -> String? {
        addresses.client(peer: peer, headers: headers)
    }

    /// Refuses the attempt when its client address is over its limit.
    func check(address: String?) throws {
        guard let limit = limits.perAddress, let address else { return }
        if case .refused(let retryAfter) = addressBuckets.take(address, limit: limit, at: clock.now()) {
            throw refused("address", limit, retryAfter)
        }
    }

    /// Refuses the attempt when its buyer or its sale is over its limit — the sale's own
    /// (`overrides`) where it has one, else the server's; otherwise the `RateLimit-Policy` and
    /// `RateLimit` headers of the buyer's limit. A buyer under a sale's own limit has a bucket
    /// for that sale, apart from the one the server's limit keeps across sales.
    package func check(buyer: String, sale: SaleID, overrides: SaleLimits = .none) throws -> HTTPFields {
        let now = clock.now()
        var headers: HTTPFields = [:]
        if let (key, limit) = buyerBucket(buyer, sale: sale, overrides: overrides) {
            switch buyers.take(key, limit: limit, at: now) {
            case .refused(let retryAfter): throw refused("buyer", limit, retryAfter)
            case .allowed(let remaining, let reset): headers = Self.headers(limit, remaining: remaining, reset: reset)
            }
        }
        if let limit = overrides.perSale ?? limits.perSale,
            case .refused(let retryAfter) = sales.take(sale, limit: limit, at: now)
        {
            throw refused("sale", limit, retryAfter)
        }
        return headers
    }

    /// The refusal `check(address:)` and then `check(buyer:sale:overrides:)` would give now, or
    /// `nil` — without taking a token or making a bucket, so that the channel can refuse an
    /// attempt before it becomes a request (`ChannelOrders`) and let the route take the tokens of
    /// any other. A refusal is counted as the route's are.
    func refusal(address: String?, buyer: String?, sale: SaleID, overrides: SaleLimits) -> RateLimited? {
        let now = clock.now()
        if let limit = limits.perAddress, let address, let retryAfter = addressBuckets.refusal(address, limit: limit, at: now) {
            return refused("address", limit, retryAfter)
        }
        if let buyer, let (key, limit) = buyerBucket(buyer, sale: sale, overrides: overrides),
            let retryAfter = buyers.refusal(key, limit: limit, at: now)
        {
            return refused("buyer", limit, retryAfter)
        }
        if let limit = overrides.perSale ?? limits.perSale, let retryAfter = sales.refusal(sale, limit: limit, at: now) {
            return refused("sale", limit, retryAfter)
        }
        return nil
    }

    /// The buyer's bucket and its limit: the sale's own (a bucket for that sale) where it has one,
    /// else the server's (one bucket across sales); `nil` without a limit.
    private func buyerBucket(_ buyer: String, sale: SaleID, overrides: SaleLimits) -> (key: String, limit: RateLimit)? {
        if let own = overrides.perBuyer { return ("\(sale)/\(buyer)", own) }
        return limits.perBuyer.map { (buyer, $0) }
    }

    /// Whether any limit is on: without one, `refusal` can only say `nil`.
    var isLimiting: Bool { limits.perAddress != nil || limits.perBuyer != nil || limits.perSale != nil }

    /// Buckets held now, by scope (for tests and the memory figure).
    package var tracked: (buyers: Int, addresses: Int, sales: Int) { (buyers.count, addressBuckets.count, sales.count) }

    private func refused(_ scope: String, _ limit: RateLimit, _ retryAfter: Int) -> RateLimited {
        refusals[scope]?.increment()
        return RateLimited(scope: scope, limit: limit, retryAfter: retryAfter)
    }

    static let policyHeader = HTTPField.Name("RateLimit-Policy")!
    static let stateHeader = HTTPField.Name("RateLimit")!

    /// The IETF httpapi draft's fields: the policy (`q` requests per `w` seconds) and what is left
    /// of it now (`r` requests, full again in `t` seconds).
    static func headers(_ limit: RateLimit, remaining: Int, reset: Int) -> HTTPFields {
        [
            policyHeader: #""buyer";q=\#(limit.burst);w=\#(limit.window)"#,
            stateHeader: #""buyer";r=\#(remaining);t=\#(reset)"#,
        ]
    }
}
