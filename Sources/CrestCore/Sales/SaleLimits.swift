import Foundation

/// A rate limit as a token bucket: `rate` requests per second on average, `burst` at once.
public struct RateLimit: Sendable, Hashable, Codable, CustomStringConvertible {
    public static let rateRange: ClosedRange<Int> = 1...10_000_000
    public static let burstRange: ClosedRange<Int> = 1...10_000_000

    public var rate: Int
    public var burst: Int

    public init(rate: Int, burst: Int) {
        precondition(rate > 0 && burst > 0, "a rate limit lets something through")
        self.rate = rate
        self.burst = burst
    }

    /// Seconds an empty bucket takes to fill: the window of the `RateLimit-Policy` header.
    public var window: Int { max(1, Int((Double(burst) / Double(rate)).rounded(.up))) }

    public var description: String { "\(rate)/s, burst \(burst)" }

    /// Decodes without the initializer's precondition: bad values are the validation's to report.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        rate = try container.decode(Int.self, forKey: .rate)
        burst = try container.decode(Int.self, forKey: .burst)
    }

    /// The problems of a limit given for `field`, for a validation error.
    func issues(field: String) -> [ValidationError.Issue] {
        var issues: [ValidationError.Issue] = []
        if !Self.rateRange.contains(rate) {
            issues.append(.init(field: "\(field).rate", message: "must be between 1 and \(Self.rateRange.upperBound)"))
        }
        if !Self.burstRange.contains(burst) {
            issues.append(.init(field: "\(field).burst", message: "must be between 1 and \(Self.burstRange.upperBound)"))
        }
        return issues
    }
}

/// A sale's own rate limits of order attempts, in place of the server's defaults: per buyer (in
/// this sale) and for the whole sale. A scope left out follows the server's default.
public struct SaleLimits: Sendable, Hashable, Codable {
    public var perBuyer: RateLimit?
    public var perSale: RateLimit?

    public init(perBuyer: RateLimit? = nil, perSale: RateLimit? = nil) {
        self.perBuyer = perBuyer
        self.perSale = perSale
    }

    /// No override: the server's defaults apply.
    public static let none = SaleLimits()

    public var isEmpty: Bool { perBuyer == nil && perSale == nil }

    /// Every problem of these limits, under `field` ("limits").
    public func issues(field: String = "limits") -> [ValidationError.Issue] {
        (perBuyer?.issues(field: "\(field).perBuyer") ?? []) + (perSale?.issues(field: "\(field).perSale") ?? [])
    }

    /// The JSON kept in the stores' `limits` column; `nil` when there is no override.
    public var storedJSON: String? {
        guard !isEmpty, let data = try? JSONEncoder().encode(self) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    /// Reads the stores' `limits` column; `nil` or unreadable text is no override.
    public init(storedJSON: String?) {
        guard let storedJSON, let limits = try? JSONDecoder().decode(Self.self, from: Data(storedJSON.utf8)) else {
            self = .none
            return
        }
        self = limits
    }
}
