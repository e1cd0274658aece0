/// An amount of money in integer minor units of an ISO 4217 currency.
///
/// Floating point never touches money: `Money(amount: 499900, currency: "CNY")` is ¥4,999.00.
/// Arithmetic that could overflow reports it instead of trapping, because the operands come from requests.
public struct Money: Codable, Sendable, Hashable {
    public var amount: Int64
    public var currency: Currency

    public init(amount: Int64, currency: Currency) {
        self.amount = amount
        self.currency = currency
    }

    /// The price of `quantity` units, or `nil` when it does not fit in 64 bits.
    public func times(_ quantity: Int) -> Money? {
        let (product, overflow) = amount.multipliedReportingOverflow(by: Int64(quantity))
        return overflow ? nil : Money(amount: product, currency: currency)
    }
}

/// An ISO 4217 alphabetic currency code: exactly three upper-case ASCII letters.
public struct Currency: Codable, Sendable, Hashable, CustomStringConvertible {
    public let code: String

    /// Fails for anything that is not three upper-case ASCII letters.
    public init?(_ code: String) {
        guard code.utf8.count == 3, code.utf8.allSatisfy({ $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) else {
            return nil
        }
        self.code = code
    }

    public var description: String { code }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let raw = try container.decode(String.self)
        guard let currency = Currency(raw) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "currency must be an ISO 4217 code of three upper-case letters")
        }
        self = currency
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(code)
    }
}
