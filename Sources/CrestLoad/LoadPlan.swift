/// What `crest loadtest` does: which Crest, which sale, which crowd, at which pace, for how long.
package struct LoadPlan: Sendable {
    /// How requests are paced.
    package enum Pace: Sendable, Equatable {
        /// `concurrency` buyers, each sending its next attempt as soon as the previous one is answered.
        case closed(concurrency: Int)
        /// Attempts arrive at `rate` per second whatever the server does, over `connections`
        /// connections; latency counts from the moment an attempt was due, so a stalled server shows
        /// up in every attempt that waited (no coordinated omission).
        case open(rate: Double, connections: Int)
    }

    /// The sale the run creates when it is not given one.
    package struct SaleSpec: Sendable {
        package var stock: Int64 = 10_000
        package var perBuyerLimit: Int = 1
        package var paymentWindowSeconds: Int = 900
        package var priceMinor: Int64 = 499_900
        package var currency: String = "CNY"
        package var sku: String = "LOADTEST"
        package var title: String = "crest loadtest"

        package init() {}
    }

    /// Base URL of the Crest API, `http://host:port`.
    package var url: String
    package var adminToken: String
    /// HS256 secret to mint each buyer's pass with (Crest's `--buyer-pass-secret`, or the
    /// development secret of its data directory); `nil` when Crest runs with `--buyer-auth off`.
    package var buyerPassSecret: String?
    /// Load an existing sale instead of creating one.
    package var saleID: String?
    package var sale = SaleSpec()
    /// Distinct buyers the attempts are drawn from (uniformly).
    package var buyers: Int = 10_000
    /// Share of attempts that repeat an earlier attempt with its idempotency key (a buyer's retry).
    package var repeatShare: Double = 0.05
    package var quantity: Int = 1
    package var pace: Pace = .closed(concurrency: 64)
    /// Stop after this many attempts…
    package var requests: Int?
    /// …or after this long, whichever comes first.
    package var duration: Duration?
    /// Share of accepted orders the run pays at the provider (through the order's pay URL); the rest
    /// are left to expire. `nil`: no payment phase.
    package var payRatio: Double?
    /// One request's limit; an attempt not answered by then counts as unanswered.
    package var timeout: Duration = .seconds(30)
    /// Send an attempt refused for load (429, 503 with `Retry-After`) again with its key once its
    /// `Retry-After` has passed, as a well-behaved client does, instead of moving on.
    package var retryRefused = false
    /// After the load, how long to go on sending attempts whose fate is unknown (503, no answer,
    /// or still in progress) again with their keys, in rounds, before the audit counts them.
    package var resendFor: Duration = .seconds(20)
    /// After the load, how long to wait beyond the last order's expiry for the sale to settle.
    package var settleGrace: Duration = .seconds(60)
    package var seed: UInt64 = 1

    package init(url: String, adminToken: String) {
        self.url = url
        self.adminToken = adminToken
    }

    /// What is wrong with the plan, if anything, in words for the operator.
    package var problem: String? {
        guard Endpoint(url) != nil else { return "--url must be http://host:port (plain HTTP), got \(url)" }
        if adminToken.isEmpty { return "--admin-token is required (the run creates a sale and audits its orders)" }
        if requests == nil && duration == nil { return "give --requests, --duration or both" }
        if let requests, requests < 1 { return "--requests must be at least 1" }
        if let duration, duration <= .zero { return "--duration must be positive" }
        if buyers < 1 { return "--buyers must be at least 1" }
        if !(0..<1).contains(repeatShare) { return "--repeat-share must be in 0…1 (1 excluded)" }
        if quantity < 1 { return "--quantity must be at least 1" }
        switch pace {
        case .closed(let concurrency):
            if !(1...10_000).contains(concurrency) { return "--concurrency must be 1…10,000" }
        case .open(let rate, let connections):
            if !(rate > 0 && rate <= 1_000_000) { return "--rate must be above 0 and at most 1,000,000 per second" }
            if !(1...10_000).contains(connections) { return "--connections must be 1…10,000" }
        }
        if let payRatio, !(0...1).contains(payRatio) { return "--pay-ratio must be in 0…1" }
        if timeout <= .zero { return "--timeout must be positive" }
        if resendFor < .zero { return "--resend-for must not be negative" }
        if saleID == nil {
            if !(1...1_000_000_000).contains(sale.stock) { return "--stock must be 1…1,000,000,000" }
            if sale.perBuyerLimit < 1 { return "--per-buyer-limit must be at least 1" }
            if sale.paymentWindowSeconds < 1 { return "--payment-window must be at least 1 second" }
        }
        return nil
    }
}

/// Host and port of a plain-HTTP base URL.
struct Endpoint: Sendable {
    var host: String
    var port: Int
    var base: String

    init?(_ url: String) {
        guard url.hasPrefix("http://") else { return nil }
        var rest = url.dropFirst("http://".count)
        while rest.hasSuffix("/") { rest = rest.dropLast() }
        guard !rest.contains("/"), !rest.isEmpty else { return nil }
        let parts = rest.split(separator: ":", omittingEmptySubsequences: false)
        switch parts.count {
        case 1: (host, port) = (String(parts[0]), 80)
        case 2:
            guard let port = Int(parts[1]), (1...65535).contains(port) else { return nil }
            (host, self.port) = (String(parts[0]), port)
        default: return nil
        }
        guard !host.isEmpty else { return nil }
        base = "http://\(rest)"
    }
}
