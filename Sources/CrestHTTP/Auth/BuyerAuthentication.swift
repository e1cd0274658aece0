import CrestCore
import CrestIdentity
import Hummingbird
import Metrics

/// How buyer routes learn who the buyer is.
package enum BuyerAuthentication: Sendable {
    /// Every buyer route needs a buyer pass signed by the shop (or the admin token, where an
    /// operator may act).
    case passes(BuyerPassVerifier)
    /// No passes (`--buyer-auth off`, for closed networks): the body names the buyer and anyone
    /// may read or cancel any order.
    case off
}

/// Who sent a request to a buyer route.
enum Caller: Sendable {
    case `operator`
    case buyer(VerifiedPass)
    /// Buyer authentication is off: whoever it is.
    case anyone

    /// Whether this caller may read or cancel `order`: an operator, anyone when passes are off,
    /// and otherwise only the order's buyer.
    func mayAccess(_ order: Order) -> Bool {
        switch self {
        case .operator, .anyone: true
        case .buyer(let pass): pass.buyer == order.buyer
        }
    }

    /// The buyer whose attempts a cancel by idempotency key may touch; `nil`: anyone's.
    var scopedBuyer: String? {
        if case .buyer(let pass) = self { pass.buyer } else { nil }
    }
}

/// A pass that is valid but does not allow this request (`403`).
enum BuyerForbidden: Error, Sendable, Hashable {
    /// The pass lists the sales it admits, and this is not one of them.
    case saleNotAdmitted
    /// The body names another buyer than the pass.
    case buyerMismatch
    /// Orders are placed with a buyer's pass, not the admin token.
    case operatorCannotOrder
}

/// Tells who is calling from the `Authorization` header: the admin token, a buyer pass, or —
/// with passes off — anyone. Each refused pass counts in `crest_buyer_pass_refusals_total{reason}`
/// (a wave of `bad_signature` after a key change is the shop signing with a key Crest lacks).
struct CallerIdentification: Sendable {
    static let refusalsLabel = "crest_buyer_pass_refusals_total"

    let admin: AdminCredential
    let authentication: BuyerAuthentication
    /// One counter per reason, made once (not a registry lookup per refusal).
    private let refusals: [String: Counter]

    init(admin: AdminCredential, authentication: BuyerAuthentication) {
        self.admin = admin
        self.authentication = authentication
        refusals = Dictionary(
            uniqueKeysWithValues: BuyerPassError.reasons.map {
                ($0, Counter(label: Self.refusalsLabel, dimensions: [("reason", $0)]))
            })
    }

    func caller(of request: Request) async throws -> Caller {
        do {
            return try await identify(request)
        } catch let error as BuyerPassError {
            refusals[error.reason]?.increment()
            throw error
        }
    }

    private func identify(_ request: Request) async throws -> Caller {
        switch authentication {
        case .off:
            // Anyone may do what an operator may on these routes, and more (place an order for
            // the buyer the body names): no token is looked at.
            return .anyone
        case .passes(let verifier):
            guard let token = AdminCredential.bearerToken(of: request) else { throw BuyerPassError.missing }
            // A JWT has dots and a generated admin token none, so a pass does not pay for the
            // admin token's digest (unless the operator chose a token with a dot).
            let isJWTShaped = AdminCredential.isJWTShaped(token)
            if !isJWTShaped || admin.looksLikeJWT, admin.matches(token) { return .operator }
            guard isJWTShaped else { throw BuyerPassError.malformed }
            return .buyer(try verifier.verify(token))
        }
    }
}
