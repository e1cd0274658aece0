import CrestCore
import Foundation
import JWTKit

/// Verifies buyer passes, remembering each verdict so that a buyer who retries with the same pass
/// many times in a sale costs one signature check, and a refused pass is refused again from memory.
/// On the calling thread, without a suspension: the channel decides a crowd's attempts with it
/// before they become requests, a buyer's first attempt included.
///
/// ```swift
/// let verifier = BuyerPassVerifier(keys: keys, clock: SystemClock())
/// let pass = try verifier.verify(bearerToken)   // BuyerPassError → 401
/// guard pass.admits(saleID) else { … }           // → 403
/// ```
public final class BuyerPassVerifier: Sendable {
    public struct Configuration: Sendable {
        /// How far the shop's clock and Crest's may disagree: a pass is current from its
        /// `nbf`/`iat` less this until its `exp` plus this.
        public var clockSkew: Duration = .seconds(60)
        /// Passes remembered as verified (each until its `exp`). 100,000 entries hold about 20 MB.
        public var acceptedCapacity = 100_000
        /// Tokens remembered as refused, apart from the verified ones so that a flood of forged
        /// tokens cannot push real passes out.
        public var refusedCapacity = 25_000
        /// How long a refusal is remembered.
        public var refusalMemory: Duration = .seconds(300)

        public init() {}
    }

    /// Longest token looked at; anything longer is `malformed` without hashing or parsing.
    public static let maxTokenLength = 8 * 1024

    private let keys: BuyerPassKeys
    private let clock: any CrestClock
    private let configuration: Configuration
    private let accepted: PassMemory<VerifiedPass>
    private let refused: PassMemory<BuyerPassError>

    public init(keys: BuyerPassKeys, clock: any CrestClock, configuration: Configuration = .init()) {
        self.keys = keys
        self.clock = clock
        self.configuration = configuration
        accepted = PassMemory(capacity: configuration.acceptedCapacity)
        refused = PassMemory(capacity: configuration.refusedCapacity)
    }

    /// The keys' summary, for the start-up log.
    public var keySummary: [String] { keys.summary }

    /// Passes and refusals remembered now.
    public var remembered: (accepted: Int, refused: Int) { (accepted.count, refused.count) }

    /// The verified pass, from memory when this token was verified before.
    public func verify(_ token: some StringProtocol) throws(BuyerPassError) -> VerifiedPass {
        guard !token.isEmpty, token.utf8.count <= Self.maxTokenLength else { throw .malformed }
        let now = clock.now()
        let digest = TokenDigest(token)
        if let pass = accepted.value(for: digest, at: now) {
            try check(pass, at: now)
            return pass
        }
        if let error = refused.value(for: digest, at: now) { throw error }
        do {
            let pass = try Self.verified(keys.claims(of: token), clockSkew: configuration.clockSkew)
            try check(pass, at: now)
            accepted.remember(pass, for: digest, until: pass.expiresAt + configuration.clockSkew.seconds, at: now)
            return pass
        } catch .notYetValid {
            throw .notYetValid  // becomes valid by itself: not remembered
        } catch {
            refused.remember(error, for: digest, until: now + configuration.refusalMemory.seconds, at: now)
            throw error
        }
    }

    /// The claims as Crest uses them, once their rules hold (`invalidClaims` otherwise); times are
    /// not checked here.
    public static func verified(_ claims: BuyerPass, clockSkew: Duration) throws(BuyerPassError) -> VerifiedPass {
        let buyer = claims.sub.value
        if let issue = TextRule(maxLength: OrderRequest.buyerMaxLength).issues(buyer, field: "sub").first {
            throw .invalidClaims("sub \(issue.message)")
        }
        var sales: Set<SaleID>?
        if let listed = claims.sales {
            var parsed = Set<SaleID>()
            for text in listed {
                guard let id = SaleID(text) else { throw .invalidClaims("sales must list sale ids") }
                parsed.insert(id)
            }
            sales = parsed
        }
        if let limit = claims.perBuyerLimit, !SaleDraft.perBuyerLimitRange.contains(limit) {
            throw .invalidClaims("perBuyerLimit must be between 1 and \(SaleDraft.perBuyerLimitRange.upperBound)")
        }
        let starts = [claims.nbf?.value, claims.iat?.value].compactMap { $0 }.max()
        return VerifiedPass(
            buyer: buyer, expiresAt: claims.exp.value, validFrom: starts.map { $0 - clockSkew.seconds }, sales: sales,
            perBuyerLimit: claims.perBuyerLimit)
    }

    private func check(_ pass: VerifiedPass, at now: Date) throws(BuyerPassError) {
        if now > pass.expiresAt + configuration.clockSkew.seconds { throw .expired }
        if let validFrom = pass.validFrom, now < validFrom { throw .notYetValid }
    }
}
