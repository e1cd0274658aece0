import Crypto
import ExtrasBase64
import Foundation
import JWTKit
import Synchronization

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

    /// A key as a pass is checked against it: its id and its algorithm (jwt-kit's, which checks a
    /// signature without a suspension — jwt-kit's key collection is an actor, reached with `await`).
    private struct Key: Sendable {
        var kid: String
        var algorithm: any JWTAlgorithm
    }

    /// In the order they were given: the first is tried first when a pass names no key it knows.
    private let keys: [Key]
    private let headers = HeaderMemory()
    /// One line per key, for the start-up log: the algorithm and the key id (never the key).
    public let summary: [String]

    public var isEmpty: Bool { summary.isEmpty }

    /// `secrets` are HS256 secrets; `jwks` is the text of a JSON Web Key Set of public keys.
    public static func make(secrets: [String], jwks: String?) async throws(KeyError) -> BuyerPassKeys {
        let collection = JWTKeyCollection()
        var keys: [Key] = []
        var summary: [String] = []
        for secret in secrets {
            guard secret.utf8.count >= minimumSecretBytes else {
                throw KeyError(
                    description: "an HS256 buyer-pass secret must be at least \(minimumSecretBytes) bytes "
                        + "(got \(secret.utf8.count)); e.g. 64 hex characters from `openssl rand -hex 32`")
            }
            let kid = secretKeyID(secret)
            await collection.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256, kid: JWKIdentifier(string: kid))
            keys.append(Key(kid: kid, algorithm: try await algorithm(of: kid, alg: "HS256", in: collection)))
            summary.append("HS256 secret \(kid)")
        }
        if let jwks {
            let set: JWKS
            do {
                set = try JSONDecoder().decode(JWKS.self, from: Data(jwks.utf8))
            } catch {
                throw KeyError(description: "the JWKS is not a JSON Web Key Set: \(error)")
            }
            for key in set.keys {
                let (kid, alg) = try await add(key, to: collection)
                keys.append(Key(kid: kid, algorithm: try await algorithm(of: kid, alg: alg, in: collection)))
                summary.append("\(alg) key \(kid)")
            }
        }
        return BuyerPassKeys(keys: keys, summary: summary)
    }

    /// The algorithm that checks passes signed with key `kid`: the key's own (`alg`, from its type).
    private static func algorithm(of kid: String, alg: String, in collection: JWTKeyCollection) async throws(KeyError)
        -> any JWTAlgorithm
    {
        do {
            return try await collection.getKey(for: JWKIdentifier(string: kid), alg: alg)
        } catch {
            throw KeyError(description: "key \(kid) cannot check \(alg) signatures: \(error)")
        }
    }

    /// The id under which an HS256 secret is known: `hs256-` and the start of its SHA-256, so a
    /// pass may name it as its `kid` and the logs can tell secrets apart without showing them.
    public static func secretKeyID(_ secret: String) -> String {
        "hs256-" + SHA256.hash(data: Data(secret.utf8)).prefix(4).map { String(format: "%02x", $0) }.joined()
    }

    /// Adds a key of the JWKS; its id and its algorithm's name.
    private static func add(_ key: JWK, to collection: JWTKeyCollection) async throws(KeyError) -> (kid: String, alg: String) {
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
        return (kid, algorithm)
    }

    // MARK: Checking a pass

    /// The claims of `token` when its signature verifies with one of the keys — the key its header
    /// names (`kid`) first, or the first key when it names none known, then every other — as
    /// jwt-kit's `JWTKeyCollection.verify(_:as:iteratingKeys: true)` decides, on the calling thread.
    /// A token not in three parts, or whose header or claims do not decode, is `malformed`; one no
    /// key signed, `badSignature`.
    func claims(of token: some StringProtocol) throws(BuyerPassError) -> BuyerPass {
        let bytes = Array(token.utf8)
        let period = UInt8(ascii: ".")
        guard let first = bytes.firstIndex(of: period), let second = bytes[(first + 1)...].firstIndex(of: period),
            !bytes[(second + 1)...].contains(period)
        else { throw .malformed }
        guard let header = try? headers.fields(of: bytes[..<first]) else { throw .malformed }
        // A signature that is not base64url verifies with no key (as with jwt-kit, whose signers
        // throw on it and are each passed over).
        guard let signature = try? Base64.decode(bytes: bytes[(second + 1)...], options: Self.base64URL) else {
            throw .badSignature
        }
        let signed = bytes[..<second]
        let named = header.kid.flatMap { kid in keys.firstIndex { $0.kid == kid } } ?? keys.startIndex
        for index in [named] + keys.indices.filter({ $0 != named }) where keys.indices.contains(index) {
            guard (try? keys[index].algorithm.verify(signature, signs: signed)) == true else { continue }
            guard let claims = Self.claims(base64URL: bytes[(first + 1)..<second]) else { throw .malformed }
            return claims
        }
        throw .badSignature
    }

    /// What jwt-kit reads of a header to choose a key, decoded as it decodes them (an `alg` that is
    /// not a string makes the token malformed, though the key, not the header, decides the algorithm).
    private struct HeaderFields: Decodable {
        var alg: String?
        var kid: String?
    }

    /// The last few headers decoded, by their bytes: a shop signs its passes with one header (its
    /// algorithm and key id; two while it rotates keys), so a crowd's passes share it, and its JSON
    /// is decoded once, not once per buyer (a fifth of a first pass's cost, by `perf`).
    private final class HeaderMemory: Sendable {
        private static let capacity = 4
        private let entries = Mutex<[(bytes: [UInt8], fields: HeaderFields)]>([])

        func fields(of encoded: ArraySlice<UInt8>) throws -> HeaderFields {
            if let known = entries.withLock({ $0.first { $0.bytes.elementsEqual(encoded) }?.fields }) { return known }
            let fields = try BuyerPassKeys.decode(HeaderFields.self, base64URL: encoded)
            entries.withLock { entries in
                if entries.count == Self.capacity { entries.removeFirst() }
                entries.append((Array(encoded), fields))
            }
            return fields
        }
    }

    private static let base64URL: Base64.DecodingOptions = [.base64UrlAlphabet, .omitPaddingCharacter]
    /// jwt-kit's decoder for a token's JSON (`JSONDecoder.defaultForJWT`).
    private static let decoder: any JWTJSONDecoder = .defaultForJWT

    /// A pass's claims: plain JSON read by hand (`BuyerPass(plainJSON:)`), any other by jwt-kit's decoder.
    private static func claims(base64URL part: ArraySlice<UInt8>) -> BuyerPass? {
        guard let json = try? Base64.decode(bytes: part, options: base64URL) else { return nil }
        return json.withUnsafeBytes { BuyerPass(plainJSON: $0) } ?? (try? decoder.decode(BuyerPass.self, from: Data(json)))
    }

    private static func decode<T: Decodable>(_ type: T.Type, base64URL part: ArraySlice<UInt8>) throws -> T {
        try decoder.decode(type, from: Data(Base64.decode(bytes: part, options: base64URL)))
    }
}

/// Signs buyer passes with an HS256 secret: what `crest buyer-pass`, `crest demo` and
/// `crest loadtest` use, and what a shop's backend does with its own JWT library. On the calling
/// thread (the load generator signs each buyer's pass on its first attempt), as jwt-kit signs: a
/// header naming the secret's key id, the claims in jwt-kit's JSON, HMAC-SHA256, base64url.
public struct BuyerPassSigner: Sendable {
    private let key: SymmetricKey
    /// The header, encoded, with the period that follows it: the same for every pass.
    private let header: String

    public init(secret: String) {
        key = SymmetricKey(data: Data(secret.utf8))
        let json = #"{"alg":"HS256","kid":"\#(BuyerPassKeys.secretKeyID(secret))","typ":"JWT"}"#
        header = Self.base64URL(Data(json.utf8)) + "."
    }

    /// A pass with these claims. Times are written in whole seconds, as shops' JWT libraries write
    /// a NumericDate (RFC 7519 §2), rounded down: Crest reads such claims without `JSONDecoder`.
    public func sign(_ pass: BuyerPass) throws -> String {
        let claims = try pass.plainJSON.map { Data($0) } ?? Self.encoder.encode(pass)
        let input = header + Self.base64URL(claims)
        return input + "." + Self.base64URL(Data(HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: key)))
    }

    /// jwt-kit's encoder for a token's JSON (`JSONEncoder.defaultForJWT`), for times past ±10¹⁵ s.
    private static let encoder: any JWTJSONEncoder = .defaultForJWT

    private static func base64URL(_ bytes: Data) -> String {
        Base64.encodeToString(bytes: bytes, options: [.base64UrlAlphabet, .omitPaddingCharacter])
    }
}
