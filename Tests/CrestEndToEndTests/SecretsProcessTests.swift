import AsyncHTTPClient
import CrestTestSupport
import Foundation
import NIOHTTP1
import Testing

/// Secrets never reach the logs or a problem body: `crest serve` at its most talkative (trace, JSON
/// lines), given every kind of secret and asked things that make it log and refuse.
@Suite("Secrets stay out of logs and problem bodies")
struct SecretsProcessTests {
    @Test("admin token, buyer-pass secret and pass, provider and merchant webhook secrets, a wrong token: none in any log line or problem")
    func noSecretLeaks() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-e2e-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let providerSecret = "provider-webhook-secret-5f1e2d3c"
        let merchantSecret = "merchant-webhook-secret-9a8b7c6d"
        let wrongToken = "almost-the-admin-token-4c3b2a19"
        let crest = try await CrestProcess(
            dataDirectory: directory,
            extraArguments: [
                "--log-level", "trace", "--log-format", "json",
                // A provider that refuses connections: the payment job fails and logs why.
                "--provider-url", "http://127.0.0.1:9", "--provider-webhook-secret", providerSecret,
            ])
        let client = CrestClient(http: .crest, port: crest.port)
        var answers: [CrestClient.Answer] = []

        answers.append(try await client.call(.GET, "/v1/jobs", headers: [("Authorization", "Bearer \(wrongToken)")]))
        answers.append(try await client.call(.GET, "/v1/jobs", headers: [("Authorization", wrongToken)]))
        let created = try await client.call(
            .POST, "/v1/webhook-endpoints", headers: CrestClient.admin,
            json: #"{"url":"http://127.0.0.1:9/hooks","secret":"\#(merchantSecret)"}"#)
        #expect(created.status == 201)
        answers.append(try await client.call(.GET, "/v1/webhook-endpoints", headers: CrestClient.admin))
        answers.append(
            try await client.call(
                .POST, "/v1/webhook-endpoints", headers: CrestClient.admin, json: #"{"url":"ftp://x","secret":"\#(merchantSecret)"}"#))
        // A provider webhook signed with a wrong secret, and one with no signature.
        let event =
            #"{"id":"evt_1","type":"payment_intent.succeeded","created":1,"data":{"id":"pi_1","reference":"x","amount":1,"currency":"CNY","status":"succeeded","created":1,"updated":1}}"#
        answers.append(
            try await client.call(
                .POST, "/v1/webhooks/provider", headers: [("Provider-Signature", "t=1,v1=\(String(repeating: "0", count: 64))")],
                json: event))
        answers.append(try await client.call(.POST, "/v1/webhooks/provider", json: event))
        // A buyer's order (its pass is a credential too), and one with a pass signed by another secret.
        let sale = try await client.createSale(stock: 5, adminToken: CrestProcess.adminToken)
        let pass = try await CrestClient.passHeader(for: "ana")
        let placed = try await client.call(
            .POST, "/v1/sales/\(sale)/orders", headers: [("Idempotency-Key", "k1"), pass], json: #"{"buyer":"ana","quantity":1}"#)
        #expect(placed.status == 201)
        answers.append(
            try await client.call(
                .POST, "/v1/sales/\(sale)/orders", headers: [("Idempotency-Key", "k2"), ("Authorization", "Bearer \(wrongToken).x.y")],
                json: #"{"buyer":"ana","quantity":1}"#))
        // The payment job fails against the dead provider: wait for its log line.
        let failed = try await eventually(timeout: .seconds(30)) { crest.log.contains("job failed") }
        #expect(failed, "\(crest.log)")
        await crest.expectGracefulStop()

        let secrets = [
            CrestProcess.adminToken, CrestProcess.buyerPassSecret, providerSecret, merchantSecret, wrongToken,
            String(pass.1.dropFirst("Bearer ".count)),
        ]
        let log = crest.log
        #expect(log.split(separator: "\n").count > 20, "the log is talkative: \(log)")
        for secret in secrets {
            #expect(!log.contains(secret), "a secret in the log: \(secret)")
            for answer in answers {
                #expect(!String(decoding: answer.body, as: UTF8.self).contains(secret), "a secret in an answer (\(answer.status))")
            }
        }
        #expect(answers.map(\.status).allSatisfy { (400..<500).contains($0) || $0 == 200 }, "\(answers.map(\.status))")
    }
}
