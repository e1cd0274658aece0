/// Why a buyer pass was not accepted. Every case is a `401` with
/// `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750), except `missing`, which names no
/// error: a request without credentials is told only how to authenticate.
public enum BuyerPassError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No `Authorization: Bearer …` header.
    case missing
    /// Not a JWT: wrong shape, bad base64url or JSON, or claims of the wrong type.
    case malformed
    /// No configured key verifies the signature (or the algorithm is not one Crest accepts).
    case badSignature
    /// Past its `exp`, beyond the clock-skew allowance.
    case expired
    /// Its `nbf` or `iat` is still in the future, beyond the clock-skew allowance.
    case notYetValid
    /// Signed and current, but a claim breaks a rule (an empty or over-long `sub`, a limit out of range).
    case invalidClaims(String)

    /// The label of `crest_buyer_pass_refusals_total{reason}`.
    public var reason: String {
        switch self {
        case .missing: "missing"
        case .malformed: "malformed"
        case .badSignature: "bad_signature"
        case .expired: "expired"
        case .notYetValid: "not_yet_valid"
        case .invalidClaims: "invalid_claims"
        }
    }

    /// Every reason, for counters made ahead of use.
    public static let reasons = ["missing", "malformed", "bad_signature", "expired", "not_yet_valid", "invalid_claims"]

    public var description: String {
        switch self {
        case .missing: "a buyer pass is required (Authorization: Bearer <pass>)"
        case .malformed: "the buyer pass is not a well-formed JWT"
        case .badSignature: "the buyer pass's signature does not verify with any configured key"
        case .expired: "the buyer pass has expired"
        case .notYetValid: "the buyer pass is not valid yet (nbf or iat in the future)"
        case .invalidClaims(let reason): "the buyer pass's claims are invalid: \(reason)"
        }
    }
}
