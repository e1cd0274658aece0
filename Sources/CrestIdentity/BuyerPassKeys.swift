import Crypto
import Foundation
import JWTKit

/// The keys buyer passes may be signed with: HS256 shared secrets and the public keys of a JWKS
/// (ES256 on P-256, EdDSA on Ed25519). Several at once, so a shop rotates by adding its new key,
/// signing with it, and removing the old one once the old passes have expired.
///
/// The key decides the algorithm: a pass is verified with each configured key's own algorithm,
/// never with the one its header names, so `alg: none` or an HS256 pass "signed" with a public
/// key cannot pass.
public struct BuyerPassKeys: Sendable {
    /// Shortest HS256 secret accepted: 256 bits, the size of the hash (RFC 7518 §3.2).
    public static let minimumSecretBytes = 32

    /// A key that cannot be used, with what to do about it.
    public struct KeyError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    let collection: JWTKeyCollection
    /// One line per key, for the start-up log: the algorithm and the key id (never the key).
    public let summary: [String]

    public var isEmpty: Bool { summary.isEmpty }

    /// `secrets` are HS256 secrets; `jwks` is the text of a JSON Web Key Set of public keys.
    public static func make(secrets: [String], jwks: String?) async throws(KeyError) -> BuyerPassKeys {
        let collection = JWTKeyCollection()
        var summary: [String] = []
        for secret in secrets {
            guard secret.utf8.count >= minimumSecretBytes else {
                throw KeyError(
                    description: "an HS256 buyer-pass secret must be at least \(minimumSecretBytes) bytes "
                        + "(got \(secret.utf8.count)); e.g. 64 hex characters from `openssl rand -hex 32`")
            }
            let kid = secretKeyID(secret)
            await collection.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256, kid: JWKIdentifier(string: kid))
            summary.append("HS256 secret \(kid)")
        }
        if let jwks {
            let set: JWKS
            do {
                set = try JSONDecoder().decode(JWKS.self, from: Data(jwks.utf8))
            } catch {
                throw KeyError(description: "the JWKS is not a JSON Web Key Set: \(error)")
            }
            for key in set.keys { summary.append(try await add(key, to: collection)) }
        }
        return BuyerPassKeys(collection: collection, summary: summary)
    }

    /// The id under which an HS256 secret is known: `hs256-` and the start of its SHA-256, so a
    /// pass may name it as its `kid` and the logs can tell secrets apart without showing them.
    public static func secretKeyID(_ secret: String) -> String {
        "hs256-" + SHA256.hash(data: Data(secret.utf8)).prefix(4).map { String(format: "%02x", $0) }.joined()
    }

    private static func add(_ key: JWK, to collection: JWTKeyCollection) async throws(KeyError) -> String {
        guard let kid = key.keyIdentifier?.string else {
            throw KeyError(description: "every key of the JWKS needs a \"kid\" (passes name their key by it)")
        }
        guard key.privateExponent == nil else {
            throw KeyError(description: "key \(kid) of the JWKS holds a private part (\"d\"): give Crest public keys only")
        }
        let algorithm: String
        if key.keyType == .ecdsa, key.curve == .ecdsa(.p256) {
            algorithm = "ES256"
        } else if key.keyType == .octetKeyPair, key.curve == .eddsa(.ed25519) {
            algorithm = "EdDSA"
        } else {
            throw KeyError(
                description: "key \(kid) of the JWKS is neither an EC P-256 (ES256) nor an OKP Ed25519 (EdDSA) key")
        }
        do {
            try await collection.add(jwk: key)
        } catch {
            throw KeyError(description: "key \(kid) of the JWKS cannot be used: \(error)")
        }
        return "\(algorithm) key \(kid)"
    }
}

/// Signs buyer passes with an HS256 secret: what `crest buyer-pass`, `crest demo` and
/// `crest loadtest` use, and what a shop's backend does with its own JWT library.
public struct BuyerPassSigner: Sendable {
    private let collection: JWTKeyCollection
    private let kid: JWKIdentifier

    public init(secret: String) async {
        collection = JWTKeyCollection()
        kid = JWKIdentifier(string: BuyerPassKeys.secretKeyID(secret))
        await collection.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256, kid: kid)
    }

    public func sign(_ pass: BuyerPass) async throws -> String {
        try await collection.sign(pass, kid: kid)
    }
}
