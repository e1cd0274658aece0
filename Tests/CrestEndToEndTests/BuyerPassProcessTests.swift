import AsyncHTTPClient
import CrestTestSupport
import Foundation
import NIOHTTP1
import Testing

/// Buyer passes as a user meets them: `crest serve` in development mode, `crest buyer-pass`, the
/// README's walk, `--buyer-auth off`, and keys refused at start.
@Suite("Buyer passes, as processes")
struct BuyerPassProcessTests {
    @Test("development mode: a secret generated once and kept; crest buyer-pass mints passes it accepts, across a restart")
    func developmentMode() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-passes-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        // No CREST_BUYER_PASS_SECRETS: the process generates its own.
        let development = ["CREST_BUYER_PASS_SECRETS": ""]
        let first = try await CrestProcess(dataDirectory: directory, environment: development)
        #expect(first.log.contains("buyer passes: development mode"), "\(first.log)")
        let secretFile = directory.appending(path: "buyer-pass-secret")
        let attributes = try FileManager.default.attributesOfItem(atPath: secretFile.path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)

        let client = CrestClient(http: .crest, port: first.port)
        let sale = try await client.createSale(stock: 5, adminToken: CrestProcess.adminToken)
        let ana = try await mint(["ana", "--data-dir", directory.path, "--sale", sale])
        let placed = try await client.call(
            .POST, "/v1/sales/\(sale)/orders", headers: [("Idempotency-Key", "k1"), ("Authorization", "Bearer \(ana)")],
            json: #"{"quantity":1}"#)
        #expect(placed.status == 201, "\(String(decoding: placed.body, as: UTF8.self))")
        let order = try #require(placed.id)
        let bob = try await mint(["bob", "--data-dir", directory.path])
        #expect(try await client.call(.GET, "/v1/orders/\(order)", headers: [("Authorization", "Bearer \(bob)")]).status == 404)
        _ = await first.stop()

        // The same secret after a restart: the pass minted before still reads its order.
        let second = try await CrestProcess(dataDirectory: directory, environment: development)
        defer { Task { _ = await second.stop() } }
        let again = CrestClient(http: .crest, port: second.port)
        let read = try await again.call(.GET, "/v1/orders/\(order)", headers: [("Authorization", "Bearer \(ana)")])
        #expect(read.status == 200 && read.json["buyer"] as? String == "ana")
    }

    @Test("--buyer-auth off says so loudly and takes the body's buyer; bad pass and rate-limit settings are refused at start")
    func offAndBadSettings() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-passes-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let off = try await CrestProcess(dataDirectory: directory, extraArguments: ["--buyer-auth", "off"])
        defer { Task { _ = await off.stop() } }
        #expect(off.log.contains("WARNING: buyer authentication is OFF"), "\(off.log)")
        let client = CrestClient(http: .crest, port: off.port)
        let sale = try await client.createSale(stock: 1, adminToken: CrestProcess.adminToken)
        let placed = try await client.call(
            .POST, "/v1/sales/\(sale)/orders", headers: [("Idempotency-Key", "k1")], json: #"{"buyer":"ana","quantity":1}"#)
        #expect(placed.status == 201)

        let base = ["serve", "--port", "0", "--data-dir", directory.path, "--admin-token", "t"]
        try await expectUsageExit(base + ["--buyer-auth", "maybe"], saying: "--buyer-auth must be on or off")
        try await expectUsageExit(base + ["--buyer-pass-secret", "short"], saying: "at least 32 bytes")
        try await expectUsageExit(base + ["--trusted-proxies", "10.0.0.0/8,nonsense"], saying: "nonsense is not an address or CIDR")
        try await expectUsageExit(base + ["--buyer-burst", "0"], saying: "buyer burst must be 1…1,000,000")
        let jwks = directory.appending(path: "keys.json")
        try Data(#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#.utf8)
            .write(to: jwks)
        try await expectUsageExit(base + ["--buyer-pass-jwks", jwks.path], saying: "needs a \"kid\"")
        try await expectUsageExit(
            base + ["--database-url", "postgres://crest@127.0.0.1:1/crest"], saying: "give --buyer-pass-secret or --buyer-pass-jwks",
            environment: ["CREST_BUYER_PASS_SECRETS": ""])
        let (status, output) = try await CrestCommand.run(
            ["buyer-pass", "ana", "--data-dir", directory.appending(path: "empty").path],
            environment: ["CREST_BUYER_PASS_SECRETS": ""], timeout: .seconds(30))
        #expect(status != 0 && output.contains("no buyer-pass secret in"), "\(output)")
    }

    private func mint(_ arguments: [String]) async throws -> String {
        let (status, output) = try await CrestCommand.run(
            ["buyer-pass"] + arguments, environment: ["CREST_BUYER_PASS_SECRETS": ""], timeout: .seconds(30))
        #expect(status == 0, "\(output)")
        return output.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
