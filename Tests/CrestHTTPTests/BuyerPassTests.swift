import CrestCore
import CrestFixtures
import CrestHTTP
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import JWTKit
import NIOCore
import Prometheus
import Testing

@testable import CrestIdentity

/// Buyer identity: who the buyer is comes from a pass the shop signed, and only an order's buyer
/// (or an operator) reads or cancels it.
@Suite("Buyer passes")
struct BuyerPassTests {
    static let keyHeader = HTTPField.Name("Idempotency-Key")!

    static func headers(pass: String, key: String? = nil) -> HTTPFields {
        var fields: HTTPFields = [.authorization: "Bearer \(pass)", .contentType: "application/json"]
        if let key { fields[keyHeader] = key }
        return fields
    }

    @Test("the buyer is the pass's subject: a body naming another buyer is refused, a body naming none is the subject's")
    func buyerIsThePassSubject() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let sale = try await client.createSale(stock: 5)
                let ana = try await HTTPFixture.pass(for: "ana")
                try await client.execute(
                    uri: "/v1/sales/\(sale)/orders", method: .post, headers: Self.headers(pass: ana, key: "k1"),
                    body: HTTPFixture.json(["buyer": "bob", "quantity": 1])
                ) { $0.expectProblem(.forbidden, "buyer-mismatch") }
                try await client.execute(
                    uri: "/v1/sales/\(sale)/orders", method: .post, headers: Self.headers(pass: ana, key: "k2"),
                    body: HTTPFixture.json(["quantity": 1])
                ) { response in
                    #expect(response.status == .created)
                    #expect(response.object["buyer"] as? String == "ana")
                }
                // The admin token reads orders but places none.
                try await client.execute(
                    uri: "/v1/sales/\(sale)/orders", method: .post, headers: HTTPFixture.adminHeaders.setting(Self.keyHeader, "k3"),
                    body: HTTPFixture.json(["buyer": "ana", "quantity": 1])
                ) { $0.expectProblem(.forbidden, "buyer-pass-required") }
                try await client.execute(uri: "/v1/sales/\(sale)", method: .get) { response in
                    #expect((response.object["stock"] as? [String: Int])?["reserved"] == 1)
                }
            }
        }
    }

    @Test("another buyer's pass gets 404 on an order, its events and its cancel; the buyer and an operator get it")
    func ordersAreTheirBuyers() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let sale = try await client.createSale(stock: 5)
                let placed = try await client.placeOrder(sale: sale, key: "k-ana", buyer: "ana")
                let id = try #require(placed.object["id"] as? String)
                let bob = try await HTTPFixture.buyerHeaders("bob")
                for (method, path) in [(HTTPRequest.Method.get, ""), (.get, "/events"), (.post, "/cancel")] {
                    try await client.execute(uri: "/v1/orders/\(id)\(path)", method: method, headers: bob) {
                        $0.expectProblem(.notFound, "order-not-found")
                    }
                    try await client.execute(uri: "/v1/orders/\(id)\(path)", method: method) {
                        $0.expectProblem(.unauthorized, "buyer-pass-required")
                        #expect($0.headers[.wwwAuthenticate] == #"Bearer realm="crest""#)
                    }
                }
                // Bob cancelling by Ana's key cancels nothing of Ana's.
                try await client.execute(
                    uri: "/v1/sales/\(sale)/orders/cancel", method: .post, headers: bob.setting(Self.keyHeader, "k-ana")
                ) { response in
                    #expect(response.status == .ok)
                    #expect(response.object["order"] == nil)
                }
                try await client.execute(uri: "/v1/orders/\(id)", method: .get, headers: HTTPFixture.adminHeaders) {
                    #expect($0.status == .ok)
                    #expect($0.object["status"] as? String == "pending_payment", "bob's cancel left ana's order alone")
                }
                try await client.execute(uri: "/v1/orders/\(id)/events", method: .get, headers: try await HTTPFixture.buyerHeaders("ana")) {
                    #expect($0.status == .ok)
                }
                try await client.execute(uri: "/v1/orders/\(id)/cancel", method: .post, headers: try await HTTPFixture.buyerHeaders("ana"))
                {
                    #expect($0.status == .ok)
                    #expect($0.object["status"] as? String == "cancelled")
                }
            }
        }
    }

    @Test("expired, future-dated, wrong-key, alg none, tampered, malformed and over-long passes are 401 invalid_token")
    func badPassesAreRefused() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let sale = try await client.createSale(stock: 5)
                let signer = BuyerPassSigner(secret: HTTPFixture.buyerPassSecret)
                let now = Date()
                let good = try signer.sign(BuyerPass(buyer: "ana", expiresAt: now + 600, issuedAt: now))
                let parts = good.split(separator: ".").map(String.init)
                let mallory = Self.base64URL(Data(#"{"sub":"mallory","exp":\#(Int(now.timeIntervalSince1970) + 600)}"#.utf8))
                let none = Self.base64URL(Data(#"{"alg":"none","typ":"JWT"}"#.utf8))
                let bad: [(String, String)] = [
                    ("expired", try signer.sign(BuyerPass(buyer: "ana", expiresAt: now - 120))),
                    (
                        "not before in the future",
                        try signer.sign(BuyerPass(buyer: "ana", expiresAt: now + 900, notBefore: now + 300))
                    ),
                    ("issued in the future", try signer.sign(BuyerPass(buyer: "ana", expiresAt: now + 900, issuedAt: now + 300))),
                    (
                        "another key",
                        try BuyerPassSigner(secret: String(repeating: "x", count: 40)).sign(
                            BuyerPass(buyer: "ana", expiresAt: now + 600))
                    ),
                    ("alg none", "\(none).\(parts[1])."),
                    ("alg none, signature kept", "\(none).\(parts[1]).\(parts[2])"),
                    ("tampered payload", "\(parts[0]).\(mallory).\(parts[2])"),
                    ("not a JWT", "abc.def.ghi"),
                    ("two parts", "\(parts[0]).\(parts[1])"),
                    ("over-long", String(repeating: "a.", count: 5000)),
                    ("blank subject", try signer.sign(BuyerPass(buyer: " ", expiresAt: now + 600))),
                ]
                for (name, pass) in bad {
                    try await client.execute(
                        uri: "/v1/sales/\(sale)/orders", method: .post, headers: Self.headers(pass: pass, key: "k-\(name)"),
                        body: HTTPFixture.json(["quantity": 1])
                    ) { response in
                        response.expectProblem(.unauthorized, "invalid-buyer-pass")
                        #expect(response.headers[.wwwAuthenticate]?.contains(#"error="invalid_token""#) == true, "\(name)")
                    }
                }
                // Within the allowance for clock skew (60 s) a pass just expired still counts: 20 s
                // before now, not before `now` above (a starved CI run took 84 s to get here).
                let justExpired = try signer.sign(BuyerPass(buyer: "ana", expiresAt: Date() - 20))
                try await client.execute(
                    uri: "/v1/sales/\(sale)/orders", method: .post, headers: Self.headers(pass: justExpired, key: "k-skew"),
                    body: HTTPFixture.json(["quantity": 1])
                ) { #expect($0.status == .created) }
                try await client.execute(uri: "/v1/sales/\(sale)", method: .get) { response in
                    #expect((response.object["stock"] as? [String: Int])?["reserved"] == 1, "only the good pass ordered")
                }
                let metrics = TestMetrics.registry.emitToString()
                for reason in ["expired", "not_yet_valid", "bad_signature", "malformed", "invalid_claims"] {
                    #expect(metrics.contains(#"crest_buyer_pass_refusals_total{reason="\#(reason)"}"#), "\(reason)")
                }
            }
        }
    }

    @Test("a pass that lists its sales admits those only (403 elsewhere); its per-buyer limit replaces the sale's")
    func saleRestrictionAndLimit() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let first = try await client.createSale(stock: 10)
                let second = try await client.createSale(stock: 10)
                let onlyFirst = try await HTTPFixture.pass(for: "ana", sales: [try #require(SaleID(first))])
                try await client.execute(
                    uri: "/v1/sales/\(second)/orders", method: .post, headers: Self.headers(pass: onlyFirst, key: "k1"),
                    body: HTTPFixture.json(["quantity": 1])
                ) { response in
                    response.expectProblem(.forbidden, "sale-not-admitted")
                    #expect(response.headers[.wwwAuthenticate]?.contains(#"error="insufficient_scope""#) == true)
                }
                try await client.execute(
                    uri: "/v1/sales/\(first)/orders", method: .post, headers: Self.headers(pass: onlyFirst, key: "k2"),
                    body: HTTPFixture.json(["quantity": 1])
                ) { #expect($0.status == .created) }
                // The sale allows one unit per buyer; this buyer's pass allows three.
                let vip = try await HTTPFixture.pass(for: "vip", perBuyerLimit: 3)
                for key in ["v1", "v2", "v3"] {
                    try await client.execute(
                        uri: "/v1/sales/\(second)/orders", method: .post, headers: Self.headers(pass: vip, key: key),
                        body: HTTPFixture.json(["quantity": 1])
                    ) { #expect($0.status == .created, "\(key)") }
                }
                try await client.execute(
                    uri: "/v1/sales/\(second)/orders", method: .post, headers: Self.headers(pass: vip, key: "v4"),
                    body: HTTPFixture.json(["quantity": 1])
                ) { response in
                    response.expectProblem(.conflict, "buyer-limit-reached")
                    #expect((response.object["detail"] as? String)?.contains("at most 3") == true)
                }
                #expect(try await client.placeOrder(sale: second, key: "b1", buyer: "bob").status == .created)
                try await client.placeOrder(sale: second, key: "b2", buyer: "bob").expectProblem(.conflict, "buyer-limit-reached")
            }
        }
    }

    @Test("ES256 and EdDSA passes verify with the JWKS's public keys; rotation: old and new keys both valid, then the old one removed")
    func publicKeysAndRotation() async throws {
        let old = try ES256PrivateKey(backing: P256.Signing.PrivateKey())
        let new = try EdDSA.PrivateKey(curve: .ed25519)
        let signers = JWTKeyCollection()
        await signers.add(ecdsa: old, kid: "shop-2026-11")
        await signers.add(eddsa: new, kid: "shop-2026-12")
        let pass = BuyerPass(buyer: "ana", expiresAt: Date() + 600, issuedAt: Date())
        let oldPass = try await signers.sign(pass, kid: "shop-2026-11")
        let newPass = try await signers.sign(pass, kid: "shop-2026-12")
        let (x, y) = try #require(old.parameters)
        let oldJWK = #"{"kty":"EC","crv":"P-256","x":"\#(x)","y":"\#(y)","kid":"shop-2026-11","alg":"ES256"}"#
        let newJWK =
            #"{"kty":"OKP","crv":"Ed25519","x":"\#(Self.base64URL(new.publicKey.rawRepresentation))","kid":"shop-2026-12","alg":"EdDSA"}"#

        let both = BuyerPassVerifier(
            keys: try await BuyerPassKeys.make(secrets: [], jwks: #"{"keys":[\#(oldJWK),\#(newJWK)]}"#), clock: SystemClock())
        #expect(try both.verify(oldPass).buyer == "ana")
        #expect(try both.verify(newPass).buyer == "ana")
        let newOnly = BuyerPassVerifier(
            keys: try await BuyerPassKeys.make(secrets: [], jwks: #"{"keys":[\#(newJWK)]}"#), clock: SystemClock())
        #expect(try newOnly.verify(newPass).buyer == "ana")
        #expect(throws: BuyerPassError.badSignature) { try newOnly.verify(oldPass) }

        // HS256 secrets rotate the same way.
        let secretA = String(repeating: "a", count: 32)
        let secretB = String(repeating: "b", count: 32)
        let passA = try BuyerPassSigner(secret: secretA).sign(pass)
        let passB = try BuyerPassSigner(secret: secretB).sign(pass)
        let rotating = BuyerPassVerifier(keys: try await BuyerPassKeys.make(secrets: [secretA, secretB], jwks: nil), clock: SystemClock())
        #expect(try rotating.verify(passA).buyer == "ana")
        #expect(try rotating.verify(passB).buyer == "ana")
        let rotated = BuyerPassVerifier(keys: try await BuyerPassKeys.make(secrets: [secretB], jwks: nil), clock: SystemClock())
        #expect(throws: BuyerPassError.badSignature) { try rotated.verify(passA) }
        #expect(try rotated.verify(passB).buyer == "ana")
    }

    @Test("unusable keys are refused at start: a short secret, a private JWK, a key without kid, an RSA key")
    func unusableKeys() async throws {
        for (secrets, jwks) in [
            (["short"], nil),
            (
                [],
                #"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","kid":"k"}]}"#
            ),
            ([], #"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#),
            (
                [],
                #"{"keys":[{"kty":"RSA","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB","kid":"rsa"}]}"#
            ),
            ([], "not json"),
        ] as [([String], String?)] {
            await #expect(throws: BuyerPassKeys.KeyError.self) { try await BuyerPassKeys.make(secrets: secrets, jwks: jwks) }
        }
    }

    @Test("a verified pass is remembered until its exp, a refused one is refused from memory; the memory is bounded")
    func memory() async throws {
        let clock = AdjustableClock()
        var configuration = BuyerPassVerifier.Configuration()
        configuration.acceptedCapacity = 64
        configuration.refusedCapacity = 32
        let verifier = BuyerPassVerifier(
            keys: try await BuyerPassKeys.make(secrets: [HTTPFixture.buyerPassSecret], jwks: nil), clock: clock,
            configuration: configuration)
        let signer = BuyerPassSigner(secret: HTTPFixture.buyerPassSecret)
        let pass = try signer.sign(BuyerPass(buyer: "ana", expiresAt: clock.now() + 120))
        for _ in 0..<100 { #expect(try verifier.verify(pass).buyer == "ana") }
        #expect(verifier.remembered.accepted == 1)
        for _ in 0..<10 { #expect(throws: BuyerPassError.malformed) { try verifier.verify("x.y.z") } }
        #expect(verifier.remembered.refused == 1)
        // The remembered pass still expires.
        clock.advance(by: .seconds(120 + 61))
        #expect(throws: BuyerPassError.expired) { try verifier.verify(pass) }

        // A crowd of distinct passes and forged tokens: the memory holds at most its capacity.
        for index in 0..<500 {
            let each = try signer.sign(BuyerPass(buyer: "b\(index)", expiresAt: clock.now() + 600))
            _ = try verifier.verify(each)
            _ = try? verifier.verify("forged.\(index).token")
        }
        #expect(verifier.remembered.accepted <= 64)
        #expect(verifier.remembered.refused <= 32)
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
