import CrestCore
import Foundation
import JWTKit

/// The claims of a buyer pass: a short-lived JWT the shop signs for one of its logged-in buyers.
///
/// ```json
/// {"sub": "buyer-42", "exp": 1764792000, "iat": 1764791100, "sales": ["0193…"], "perBuyerLimit": 2}
/// ```
///
/// `sub` and `exp` are required. `sales`, when present, lists the only sales the pass admits;
/// `perBuyerLimit`, when present, replaces the sale's per-buyer limit for this buyer. `nbf` and
/// `iat` are honoured with the verifier's clock-skew allowance.
public struct BuyerPass: JWTPayload, Equatable {
    public var sub: SubjectClaim
    public var exp: ExpirationClaim
    public var nbf: NotBeforeClaim?
    public var iat: IssuedAtClaim?
    public var sales: [String]?
    public var perBuyerLimit: Int?

    public init(
        buyer: String, expiresAt: Date, issuedAt: Date? = nil, notBefore: Date? = nil, sales: [SaleID]? = nil,
        perBuyerLimit: Int? = nil
    ) {
        sub = SubjectClaim(value: buyer)
        exp = ExpirationClaim(value: expiresAt)
        iat = issuedAt.map(IssuedAtClaim.init(value:))
        nbf = notBefore.map(NotBeforeClaim.init(value:))
        self.sales = sales?.map(\.description)
        self.perBuyerLimit = perBuyerLimit
    }

    /// Time checks need the verifier's clock and allowance, so `BuyerPassVerifier` makes them;
    /// jwt-kit calls this after the signature held.
    public func verify(using algorithm: some JWTAlgorithm) async throws {}
}

extension BuyerPass {
    /// Reads claims as a shop's JWT library writes them — `sub` and `exp`, the optional claims of a
    /// pass, each at most once, times in whole seconds, and other claims whose value is a plain
    /// string or number (ignored, as `JSONDecoder` ignores them) — with `PlainJSON`: a crowd's
    /// first passes are verified on the event loop (`crest-bench passes`: a first HS256 check
    /// 8.7 → 3.6 µs, with the memories specialised). `nil` for anything else, which goes to
    /// jwt-kit's `JSONDecoder` as before.
    init?(plainJSON bytes: UnsafeRawBufferPointer) {
        var json = PlainJSON(bytes)
        var sub: String?
        var times: [Date?] = [nil, nil, nil]  // exp, nbf, iat
        var sales: [String]?
        var perBuyerLimit: Int?
        let plain = json.object { name, json in
            if name.elementsEqual("sub".utf8) {
                guard sub == nil else { return false }
                sub = json.text()
                return sub != nil
            } else if let time = Self.timeClaims.firstIndex(where: { name.elementsEqual($0.utf8) }) {
                // At most 15 digits: every such number is a Double exactly, as JSONDecoder reads it.
                guard times[time] == nil, let seconds = json.integer(maxDigits: 15) else { return false }
                times[time] = Date(timeIntervalSince1970: Double(seconds))
                return true
            } else if name.elementsEqual("sales".utf8) {
                guard sales == nil else { return false }
                sales = json.texts()
                return sales != nil
            } else if name.elementsEqual("perBuyerLimit".utf8) {
                guard perBuyerLimit == nil else { return false }
                perBuyerLimit = json.integer(maxDigits: 18)
                return perBuyerLimit != nil
            }
            return json.skipScalar()
        }
        guard plain, json.isAtEnd, let sub, let expires = times[0] else { return nil }
        self.init(
            buyer: sub, expiresAt: expires, issuedAt: times[2], notBefore: times[1], sales: nil, perBuyerLimit: perBuyerLimit)
        self.sales = sales
    }

    /// The claims as JSON written by hand (`BuyerPassSigner`), times in whole seconds rounded down;
    /// `nil` when a time is past ±10¹⁵ s (`PlainJSON` reads no longer number).
    var plainJSON: [UInt8]? {
        var json: [UInt8] = []
        json.reserveCapacity(96)
        json.append(contentsOf: #"{"sub":"#.utf8)
        PlainJSON.appendQuoted(sub.value, to: &json)
        for (name, time) in zip(Self.timeClaims, [exp.value, nbf?.value, iat?.value]) {
            guard let time else { continue }
            guard let seconds = Int(exactly: time.timeIntervalSince1970.rounded(.down)), abs(seconds) < 1_000_000_000_000_000
            else { return nil }
            json.append(contentsOf: ",\"\(name)\":\(seconds)".utf8)
        }
        if let sales {
            json.append(contentsOf: #","sales":["#.utf8)
            for (index, sale) in sales.enumerated() {
                if index > 0 { json.append(UInt8(ascii: ",")) }
                PlainJSON.appendQuoted(sale, to: &json)
            }
            json.append(UInt8(ascii: "]"))
        }
        if let perBuyerLimit { json.append(contentsOf: #","perBuyerLimit":\#(perBuyerLimit)"#.utf8) }
        json.append(UInt8(ascii: "}"))
        return json
    }

    private static let timeClaims = ["exp", "nbf", "iat"]
}

/// A pass whose signature, times and claims held: who the buyer is and what the pass allows.
public struct VerifiedPass: Sendable, Hashable {
    public var buyer: String
    public var expiresAt: Date
    /// Not before this time (the pass's `nbf`, or its `iat`, less the allowance); `nil` when neither.
    public var validFrom: Date?
    /// The only sales the pass admits; `nil`: every sale.
    public var sales: Set<SaleID>?
    /// Replaces the sale's per-buyer limit for this buyer.
    public var perBuyerLimit: Int?

    public init(buyer: String, expiresAt: Date, validFrom: Date?, sales: Set<SaleID>?, perBuyerLimit: Int?) {
        self.buyer = buyer
        self.expiresAt = expiresAt
        self.validFrom = validFrom
        self.sales = sales
        self.perBuyerLimit = perBuyerLimit
    }

    /// Whether the pass lets its buyer order from `sale`.
    public func admits(_ sale: SaleID) -> Bool { sales?.contains(sale) ?? true }
}
