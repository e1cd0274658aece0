import CrestCore
import CrestIdentity
import Foundation
import Synchronization

/// The crowd's buyer passes, as the shop would hand them out: one per buyer, minted on the
/// buyer's first attempt and sent with every attempt after it (so Crest verifies each once and
/// then remembers it, as in a real sale).
final class BuyerPassBook: Sendable {
    private let signer: BuyerPassSigner
    private let expiresAt: Date
    /// Each buyer's `Authorization` value.
    private let passes = Mutex<[String: String]>([:])

    init(secret: String, lifetime: Duration) {
        signer = BuyerPassSigner(secret: secret)
        expiresAt = Date() + lifetime.seconds
    }

    /// `Authorization: Bearer <the buyer's pass>` (kept whole: made once per buyer, not per attempt).
    func header(for buyer: String) throws -> (String, String) {
        if let value = passes.withLock({ $0[buyer] }) { return ("Authorization", value) }
        let value = "Bearer " + (try signer.sign(BuyerPass(buyer: buyer, expiresAt: expiresAt, issuedAt: Date())))
        passes.withLock { $0[buyer] = value }
        return ("Authorization", value)
    }
}
