import ArgumentParser
import CrestCore
import CrestIdentity
import Crypto
import Foundation
import JWTKit

/// The cost of a buyer pass to Crest, on one core: a first verification (signature, claims, memory
/// insert) for each algorithm a shop may sign with, and a pass verified before (from memory).
struct Passes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "passes", abstract: "Verify buyer passes: µs per first verification by algorithm, and per remembered pass.")

    @Option(help: "Passes verified per algorithm.") var count = 5_000

    func run() async throws {
        let secret = String(repeating: "s", count: 32)
        let ecdsa = try ES256PrivateKey(backing: P256.Signing.PrivateKey())
        let eddsa = try EdDSA.PrivateKey(curve: .ed25519)
        let signers = JWTKeyCollection()
        await signers.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256, kid: "hs")
        await signers.add(ecdsa: ecdsa, kid: "es")
        await signers.add(eddsa: eddsa, kid: "ed")
        let (x, y) = try require(ecdsa.parameters)
        let edX = eddsa.publicKey.rawRepresentation.base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        let jwks = """
            {"keys":[{"kty":"EC","crv":"P-256","x":"\(x)","y":"\(y)","kid":"es","alg":"ES256"},
                     {"kty":"OKP","crv":"Ed25519","x":"\(edX)","kid":"ed","alg":"EdDSA"}]}
            """
        let keys = try await BuyerPassKeys.make(secrets: [secret], jwks: jwks)
        var configuration = BuyerPassVerifier.Configuration()
        configuration.acceptedCapacity = count * 4
        let verifier = BuyerPassVerifier(keys: keys, clock: SystemClock(), configuration: configuration)
        // In whole seconds, as shops' JWT libraries write times (and Crest reads them without JSONDecoder).
        let expires = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + 3600).rounded(.down))
        var lines: [String] = []
        for (name, kid) in [("HS256", "hs"), ("ES256", "es"), ("EdDSA", "ed")] {
            var tokens: [String] = []
            for index in 0..<count {
                tokens.append(
                    try await signers.sign(BuyerPass(buyer: "\(name)-\(index)", expiresAt: expires), kid: JWKIdentifier(string: kid)))
            }
            let started = ContinuousClock.now
            for token in tokens { _ = try verifier.verify(token) }
            let first = (ContinuousClock.now - started).seconds / Double(count) * 1e6
            let again = ContinuousClock.now
            for token in tokens { _ = try verifier.verify(token) }
            let remembered = (ContinuousClock.now - again).seconds / Double(count) * 1e6
            lines.append("\(name) first_us=\(String(format: "%.1f", first)) remembered_us=\(String(format: "%.2f", remembered))")
        }
        print("passes=\(count) per algorithm, one task\n" + lines.joined(separator: "\n"))
    }
}

private func require<T>(_ value: T?) throws -> T {
    guard let value else { throw ValidationError("a key without public parameters") }
    return value
}
