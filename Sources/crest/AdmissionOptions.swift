import ArgumentParser
import CrestCore
import CrestHTTP
import Foundation

/// `crest serve`'s rate limits of order attempts: per buyer, per client address, per sale.
struct AdmissionOptions: ParsableArguments {
    @Option(help: Self.buyerRate.help) var buyerRate: Int?
    @Option(help: Self.buyerBurst.help) var buyerBurst: Int?
    @Option(help: Self.addressRate.help) var addressRate: Int?
    @Option(help: Self.addressBurst.help) var addressBurst: Int?
    @Option(help: Self.saleRate.help) var saleRate: Int?
    @Option(help: Self.saleBurst.help) var saleBurst: Int?
    @Option(help: Self.trackedKeys.help) var rateLimitKeys: Int?

    static let trustedProxiesSetting = TextSetting(
        env: "CREST_TRUSTED_PROXIES", defaultText: "none: the client is the socket's peer",
        meaning:
            "Proxies whose Forwarded / X-Forwarded-For headers name the client, as comma-separated addresses or CIDRs, e.g. 10.0.0.0/8,::1"
    )
    @Option(help: Self.trustedProxiesSetting.help) var trustedProxies: String?

    static let buyerRate = IntSetting(
        name: "buyer rate", env: "CREST_BUYER_RATE", defaultValue: 10, range: 0...1_000_000, unit: " per second",
        meaning: "Order attempts one buyer may send per second on average; 0 turns the limit off")
    static let buyerBurst = IntSetting(
        name: "buyer burst", env: "CREST_BUYER_BURST", defaultValue: 20, range: 1...1_000_000,
        meaning: "Order attempts one buyer may send at once")
    static let addressRate = IntSetting(
        name: "address rate", env: "CREST_ADDRESS_RATE", defaultValue: 0, range: 0...1_000_000, unit: " per second",
        meaning:
            "Order attempts one client address may send per second; 0 (the default: behind a proxy that is not trusted, every buyer shares its address) turns it off"
    )
    static let addressBurst = IntSetting(
        name: "address burst", env: "CREST_ADDRESS_BURST", defaultValue: 100, range: 1...1_000_000,
        meaning: "Order attempts one client address may send at once")
    static let saleRate = IntSetting(
        name: "sale rate", env: "CREST_SALE_RATE", defaultValue: 0, range: 0...10_000_000, unit: " per second",
        meaning: "Order attempts one sale takes per second from everyone; 0 turns it off")
    static let saleBurst = IntSetting(
        name: "sale burst", env: "CREST_SALE_BURST", defaultValue: 1_000, range: 1...10_000_000,
        meaning: "Order attempts one sale takes at once")
    static let trackedKeys = IntSetting(
        name: "rate limit keys", env: "CREST_RATE_LIMIT_KEYS", defaultValue: 200_000, range: 16...100_000_000,
        meaning: "Buyers and addresses each limit tracks at most (about 100 bytes each); past it, idle ones are forgotten first")

    func limits(_ settings: Settings) throws -> AdmissionLimits {
        var limits = AdmissionLimits()
        limits.perBuyer = try Self.limit(
            rate: Self.buyerRate.resolve(buyerRate, in: settings), burst: Self.buyerBurst.resolve(buyerBurst, in: settings))
        limits.perAddress = try Self.limit(
            rate: Self.addressRate.resolve(addressRate, in: settings),
            burst: Self.addressBurst.resolve(addressBurst, in: settings))
        limits.perSale = try Self.limit(
            rate: Self.saleRate.resolve(saleRate, in: settings), burst: Self.saleBurst.resolve(saleBurst, in: settings))
        limits.trackedKeys = try Self.trackedKeys.resolve(rateLimitKeys, in: settings)
        let proxies = Self.trustedProxiesSetting.resolve(trustedProxies, in: settings) ?? ""
        for text in proxies.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !text.isEmpty {
            guard let network = CIDR(text) else {
                throw ValidationError("--trusted-proxies: \(text) is not an address or CIDR (e.g. 10.0.0.0/8, ::1)")
            }
            limits.trustedProxies.append(network)
        }
        return limits
    }

    private static func limit(rate: Int, burst: Int) -> RateLimit? {
        rate == 0 ? nil : RateLimit(rate: rate, burst: burst)
    }
}
