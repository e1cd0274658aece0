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
