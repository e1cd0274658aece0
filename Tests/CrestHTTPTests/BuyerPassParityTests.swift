import CrestCore
import Crypto
import Foundation
import JWTKit
import Testing

@testable import CrestIdentity

/// `BuyerPassKeys.claims(of:)` checks a pass on the calling thread; jwt-kit's key collection (an
/// actor) decided before. Both must say the same of every token: the same claims, or the same
/// refusal.
@Suite("Buyer passes checked without jwt-kit's actor")
struct BuyerPassParityTests {
    /// What the verifier made of jwt-kit's verdicts before it checked passes itself.
    static func jwtKitVerdict(_ token: String, _ collection: JWTKeyCollection) async -> Result<BuyerPass, BuyerPassError> {
        do {
            return .success(try await collection.verify(token, as: BuyerPass.self, iteratingKeys: true))
        } catch let error as JWTError where error.errorType == .signatureVerificationFailed {
            return .failure(.badSignature)
        } catch let error as JWTError where error.errorType == .malformedToken {
            return .failure(.malformed)
        } catch is DecodingError {
            return .failure(.malformed)
        } catch {
            return .failure(.badSignature)
        }
    }

    static func verdict(_ token: String, _ keys: BuyerPassKeys) -> Result<BuyerPass, BuyerPassError> {
        Result { () throws(BuyerPassError) in try keys.claims(of: token) }
    }

    /// A token of this header and these claims, signed with an HS256 secret.
    static func hs256(header: String, claims: String, secret: String) -> String {
        let input = "\(BuyerPassTests.base64URL(Data(header.utf8))).\(BuyerPassTests.base64URL(Data(claims.utf8)))"
        let code = HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return "\(input).\(BuyerPassTests.base64URL(Data(code)))"
    }

    /// A token of this header and these claims, signed with a P-256 key (JWS's r ‖ s).
    static func es256(header: String, claims: String, key: P256.Signing.PrivateKey) throws -> String {
        let input = "\(BuyerPassTests.base64URL(Data(header.utf8))).\(BuyerPassTests.base64URL(Data(claims.utf8)))"
        return "\(input).\(BuyerPassTests.base64URL(try key.signature(for: Data(input.utf8)).rawRepresentation))"
    }

    static func padded(_ base64URL: String) -> String {
        let plain = base64URL.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        return plain + String(repeating: "=", count: (4 - plain.count % 4) % 4)
    }

    /// A token's claims as a JSON object (keys in no order).
    static func claimsObject(_ token: String) throws -> NSDictionary {
        let part = try #require(token.split(separator: ".").dropFirst().first)
        let data = try #require(Data(base64Encoded: padded(String(part))))
        return try #require(try JSONSerialization.jsonObject(with: data) as? NSDictionary)
    }

    @Test("HS256, ES256 and EdDSA keys: good, forged, misnamed and malformed tokens get jwt-kit's verdict")
    func sameVerdicts() async throws {
        let secretA = String(repeating: "a", count: 32)
        let secretB = String(repeating: "b", count: 40)
        let ecKey = P256.Signing.PrivateKey()
        let ec = try ES256PrivateKey(backing: ecKey)
        let ed = try EdDSA.PrivateKey(curve: .ed25519)
        let (x, y) = try #require(ec.parameters)
        let jwks = """
            {"keys":[{"kty":"EC","crv":"P-256","x":"\(x)","y":"\(y)","kid":"ec-1","alg":"ES256"},
            {"kty":"OKP","crv":"Ed25519","x":"\(BuyerPassTests.base64URL(ed.publicKey.rawRepresentation))","kid":"ed-1","alg":"EdDSA"}]}
            """
        let keys = try await BuyerPassKeys.make(secrets: [secretA, secretB], jwks: jwks)
        // The collection the verifier used to ask, made as it was made.
        let reference = JWTKeyCollection()
        for secret in [secretA, secretB] {
            await reference.add(
                hmac: HMACKey(from: secret), digestAlgorithm: .sha256, kid: JWKIdentifier(string: BuyerPassKeys.secretKeyID(secret)))
        }
        _ = try await reference.add(jwksJSON: jwks)

        let signers = JWTKeyCollection()
        await signers.add(ecdsa: ec, kid: "ec-1")
        await signers.add(eddsa: ed, kid: "ed-1")
        await signers.add(hmac: HMACKey(from: secretA), digestAlgorithm: .sha256, kid: "hs-unnamed")
        await signers.add(
            hmac: HMACKey(from: secretB), digestAlgorithm: .sha256, kid: JWKIdentifier(string: BuyerPassKeys.secretKeyID(secretB)))
        await signers.add(hmac: HMACKey(from: String(repeating: "z", count: 32)), digestAlgorithm: .sha256, kid: "stranger")
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let pass = BuyerPass(
            buyer: "ana", expiresAt: now + 600, issuedAt: now, sales: [SaleID("01a24214-54d9-7444-a5c0-5c9d57d6df88")!], perBuyerLimit: 2)

        var tokens: [(String, String)] = []
        for kid in ["ec-1", "ed-1", "hs-unnamed", BuyerPassKeys.secretKeyID(secretB), "stranger"] {
            tokens.append(("signed by \(kid)", try await signers.sign(pass, kid: JWKIdentifier(string: kid))))
        }
        let good = try await signers.sign(pass, kid: "hs-unnamed").split(separator: ".", omittingEmptySubsequences: false)
            .map(String.init)
        let claims = String(decoding: try #require(Data(base64Encoded: Self.padded(good[1]))), as: UTF8.self)
        // Headers that name another key, or none, over a good signature: every key is tried, the
        // named one first.
        for header in [
            #"{"alg":"HS256","kid":"ec-1"}"#, #"{"alg":"HS256"}"#, #"{"alg":"ES256","kid":"nobody"}"#,
            #"{"alg":"none","kid":"ed-1"}"#, #"{"kid":"\#(BuyerPassKeys.secretKeyID(secretB))"}"#, "{}",
        ] {
            tokens.append(("HS256 (first secret) under \(header)", Self.hs256(header: header, claims: claims, secret: secretA)))
            tokens.append(("HS256 (second secret) under \(header)", Self.hs256(header: header, claims: claims, secret: secretB)))
            tokens.append(("ES256 under \(header)", try Self.es256(header: header, claims: claims, key: ecKey)))
        }
        let header = { (json: String) in BuyerPassTests.base64URL(Data(json.utf8)) }
        tokens += [
            ("alg none, no signature", "\(header(#"{"alg":"none"}"#)).\(good[1])."),
            ("tampered payload", "\(good[0]).\(header(#"{"sub":"mallory","exp":1900000000}"#)).\(good[2])"),
            ("signature cut short", "\(good[0]).\(good[1]).\(good[2].dropLast(4))"),
            ("signature not base64url", "\(good[0]).\(good[1]).\(good[2].dropLast(2))!*"),
            ("signature padded", "\(good[0]).\(good[1]).\(good[2])="),
            ("header not JSON", Self.hs256(header: "alg", claims: claims, secret: secretA)),
            ("header kid a number", Self.hs256(header: #"{"alg":"HS256","kid":7}"#, claims: claims, secret: secretA)),
            ("header not base64url", "*\(good[0]).\(good[1]).\(good[2])"),
            ("two parts", "\(good[0]).\(good[1])"),
            ("four parts", "\(good[0]).\(good[1]).\(good[2]).x"),
            ("empty parts", ".."),
            ("not a JWT", "abc.def.ghi"),
        ]
        // Claims that do not decode, correctly signed: malformed only once the signature holds.
        for (name, claims) in [
            ("no exp", #"{"sub":"ana"}"#), ("exp a string", #"{"sub":"ana","exp":"soon"}"#),
            ("sub a number", #"{"sub":7,"exp":1900000000}"#), ("claims not JSON", "ana"),
            ("sales not a list", #"{"sub":"ana","exp":1900000000,"sales":"all"}"#),
            ("good claims, fractional exp", #"{"sub":"ana","exp":1900000000.5}"#),
        ] {
            tokens.append((name, Self.hs256(header: #"{"alg":"HS256"}"#, claims: claims, secret: secretA)))
            tokens.append(("\(name), forged", Self.hs256(header: #"{"alg":"HS256"}"#, claims: claims, secret: "stranger")))
        }

        for (name, token) in tokens {
            let expected = await Self.jwtKitVerdict(token, reference)
            let got = Self.verdict(token, keys)
            switch (expected, got) {
            case (.success(let a), .success(let b)): #expect(a == b, "\(name)")
            case (.failure(let a), .failure(let b)): #expect(a == b, "\(name): jwt-kit \(a), here \(b)")
            default: Issue.record("\(name): jwt-kit \(expected), here \(got)")
            }
        }
        // The good ones are good.
        for kid in ["ec-1", "ed-1", "hs-unnamed"] {
            let token = try await signers.sign(pass, kid: JWKIdentifier(string: kid))
            #expect((try? keys.claims(of: token)) == pass, "\(kid)")
        }
        #expect(throws: BuyerPassError.badSignature) { try keys.claims(of: tokens[4].1) }
        // Both kinds of answer are among the verdicts compared (the test is not vacuous).
        let verdicts = tokens.map { Self.verdict($0.1, keys) }
        #expect(verdicts.filter { (try? $0.get()) != nil }.count >= 15)
        #expect(verdicts.contains { if case .failure(.badSignature) = $0 { true } else { false } })
        #expect(verdicts.contains { if case .failure(.malformed) = $0 { true } else { false } })
    }

    @Test("a pass BuyerPassSigner signs is one jwt-kit verifies, naming the secret's key id, its claims intact")
    func signerAsJWTKit() async throws {
        let secret = String(repeating: "s", count: 32)
        let kid = BuyerPassKeys.secretKeyID(secret)
        let reference = JWTKeyCollection()
        await reference.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256, kid: JWKIdentifier(string: kid))
        let signer = BuyerPassSigner(secret: secret)
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        for pass in [
            BuyerPass(buyer: "ana", expiresAt: now + 600),
            BuyerPass(
                buyer: #"b "quoted" / ünïcode"#, expiresAt: now + 600, issuedAt: now, notBefore: now - 5,
                sales: [SaleID("01a24214-54d9-7444-a5c0-5c9d57d6df88")!], perBuyerLimit: 3),
        ] {
            let token = try signer.sign(pass)
            #expect(try await reference.verify(token, as: BuyerPass.self) == pass)
            let header = try #require(Data(base64Encoded: Self.padded(String(token.prefix { $0 != "." }))))
            let fields = try JSONDecoder().decode([String: String].self, from: header)
            #expect(fields == ["alg": "HS256", "kid": kid, "typ": "JWT"])
            // And jwt-kit's own signature of the same claims carries the same claims object. Not the same
            // bytes: Foundation's JSONEncoder orders an object's keys as a dictionary of its own does, which
            // differs from one encoding to the next (a clean-clone CI run saw two orders).
            let reference = try await reference.sign(pass, kid: JWKIdentifier(string: kid))
            #expect(try Self.claimsObject(reference) == Self.claimsObject(token))
            #expect(try Self.claimsObject(token).count == (pass.iat == nil ? 2 : 6))
            // Crest reads the signer's claims by hand (escapes and non-ASCII go to JSONDecoder).
            let claims = try #require(Data(base64Encoded: Self.padded(String(token.split(separator: ".")[1]))))
            let plain = claims.withUnsafeBytes { BuyerPass(plainJSON: $0) }
            #expect(pass.sub.value == "ana" ? plain == pass : plain == nil)
        }
        // Times in whole seconds, rounded down, as shops' JWT libraries write them.
        let token = try signer.sign(BuyerPass(buyer: "ana", expiresAt: now + 600.9, issuedAt: now + 0.5))
        #expect(try await reference.verify(token, as: BuyerPass.self) == BuyerPass(buyer: "ana", expiresAt: now + 600, issuedAt: now))
    }

    // MARK: Claims read by hand

    static func plainClaims(_ text: String) -> BuyerPass? {
        Array(text.utf8).withUnsafeBytes { BuyerPass(plainJSON: $0) }
    }

    static func decoded(_ text: String) -> BuyerPass? {
        try? JSONDecoder.defaultForJWT.decode(BuyerPass.self, from: Data(text.utf8))
    }

    @Test("plain claims are read by hand, to what jwt-kit's decoder reads")
    func plainClaimsRead() throws {
        for text in [
            #"{"sub":"b-1","exp":1800000600}"#,
            #"{"exp":1800000600,"sub":"b-1","iat":1800000000,"nbf":1799999995}"#,
            #" { "sub" : "x y/z" , "exp" : 0 , "perBuyerLimit" : 3 } "#,
            "{\n\t\"sub\": \"\",\r\n\"exp\": 999999999999999}",
            #"{"sub":"b","exp":1800000600,"sales":["01a24214-54d9-7444-a5c0-5c9d57d6df88","not-a-sale"]}"#,
            #"{"sub":"b","exp":1800000600,"sales":[ ]}"#,
            #"{"iss":"shop","sub":"b","jti":"7f3a","exp":1800000600,"ver":2}"#,
        ] {
            let plain = try #require(Self.plainClaims(text), "\(text)")
            #expect(plain == Self.decoded(text), "\(text)")
        }
    }

    @Test("claims that are not plain go to jwt-kit's decoder")
    func unusualClaims() {
        for text in [
            #"{"sub":"b\"1","exp":1}"#, #"{"sub":"b\u0031","exp":1}"#, #"{"sub":"ü","exp":1}"#, #"{"sub":"b","exp":-1}"#,
            #"{"sub":"b","exp":1.5}"#, #"{"sub":"b","exp":1e9}"#, #"{"sub":"b","exp":01}"#,
            #"{"sub":"b","exp":1000000000000000}"#, #"{"sub":"b","exp":1,"aud":["a"]}"#, #"{"sub":"b","exp":1,"x":null}"#,
            #"{"sub":"b","exp":1,"x":true}"#, #"{"sub":"b","exp":1,"x":{}}"#, #"{"sub":"b","sub":"c","exp":1}"#,
            #"{"sub":"b","exp":1,"exp":2}"#, #"{"sub":"b"}"#, #"{"exp":1}"#, "{}", "", #"{"sub":"b","exp":1}x"#,
            #"{"sub":"b","exp":1,}"#, #"{"sub":"b","exp":"1"}"#, #"{"sub":null,"exp":1}"#, #"{"sub":"b","exp":1,"nbf":null}"#,
            #"{"sub":"b","exp":1,"sales":["a",]}"#, #"{"sub":"b","exp":1,"sales":[1]}"#, #"{"sub":"b","exp":1,"sales":"a"}"#,
            #"{"sub":"b","exp":1,"perBuyerLimit":1.0}"#, #"[{"sub":"b","exp":1}]"#, #"{"sub":"b","exp":1"#,
        ] {
            #expect(Self.plainClaims(text) == nil, "\(text)")
        }
    }

    /// Random edits of plain claims: whatever the hand-written reader accepts, jwt-kit's decoder
    /// must read to the same claims.
    @Test("the hand-written claims reader never disagrees with jwt-kit's decoder")
    func claimsAgreeWithDecoder() throws {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array(#"{}[]":,. -+0123456789eEsubxpiatnfl\"#.utf8) + [0x09, 0x0A, 0x00, 0xC3, 0xBC]
        let original = #"{"sub": "b-1", "exp": 1800000600, "iat": 18000, "sales": ["s1"], "perBuyerLimit": 2, "x": "y"}"#
        var accepted = 0
        for _ in 0..<20_000 {
            var bytes = Array(original.utf8)
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                let at = Int.random(in: 0..<bytes.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: bytes[at] = alphabet.randomElement(using: &generator)!
                case 1: bytes.insert(alphabet.randomElement(using: &generator)!, at: at)
                default: bytes.remove(at: at)
                }
            }
            guard let fast = bytes.withUnsafeBytes({ BuyerPass(plainJSON: $0) }) else { continue }
            accepted += 1
            let slow = try JSONDecoder.defaultForJWT.decode(BuyerPass.self, from: Data(bytes))
            #expect(slow == fast, "\(String(decoding: bytes, as: UTF8.self))")
        }
        #expect(accepted > 100)
    }
}
