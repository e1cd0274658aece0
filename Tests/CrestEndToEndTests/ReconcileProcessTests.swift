import AsyncHTTPClient
import CrestTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import Testing

@Suite("crest reconcile, with crest serve and crest psp-sim as processes")
struct ReconcileProcessTests {
    @Test("a lost success webhook is healed (exit 0) and not healed twice; a difference left for an operator exits 1, told in JSON")
    func reconcileCommand() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-e2e-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let crestPort = freeLoopbackPort()
        // Every success's webhook is lost: Crest only learns of it by reconciling.
        let simulator = try await CrestProcess(
            arguments: [
                "psp-sim", "--host", "127.0.0.1", "--port", "0", "--webhook-secret", "e2e", "--log-level", "warning",
                "--webhook-url", "http://127.0.0.1:\(crestPort)/v1/webhooks/provider", "--success-webhook-loss-rate", "1",
            ], listening: "psp-sim listening on")
        let crest = try await CrestProcess(
            dataDirectory: directory,
            extraArguments: [
                "--port", "\(crestPort)", "--provider-url", "http://127.0.0.1:\(simulator.port)", "--provider-webhook-secret", "e2e",
            ])
        let client = CrestClient(http: .crest, port: crest.port)
        let simulatorClient = CrestClient(http: .crest, port: simulator.port)
        let sale = try await client.createSale(stock: 5, adminToken: CrestProcess.adminToken)

        func paidOrder(_ buyer: String) async throws -> String {
            let orderID = try #require(try await client.order(sale: sale, key: "k-\(buyer)", buyer: buyer).id)
            let paymentID = try await client.paymentID(of: orderID, timeout: .seconds(90))
            #expect(paymentID != nil, "no payment for the order:\n\(crest.log)")
            let paid = try await simulatorClient.call(
                .POST, "/v1/payment_intents/\(try #require(paymentID))/simulate", json: #"{"outcome":"succeeded"}"#)
            #expect(paid.status == 200)
            return orderID
        }
        func status(_ id: String) async throws -> String? {
            try await client.call(.GET, "/v1/orders/\(id)", headers: CrestClient.admin).json["status"] as? String
        }
        let lost = try await paidOrder("ana")
        #expect(try await status(lost) == "pending_payment")
        let reconcile = ["reconcile", "--from", "1h", "--url", "http://127.0.0.1:\(crest.port)", "--admin-token", CrestProcess.adminToken]

        let healed = try await CrestCommand.run(reconcile, timeout: .seconds(120))
        #expect(healed.status == 0, "\(healed.output)")
        #expect(healed.output.contains("healed  succeeded-not-recorded"), "\(healed.output)")
        #expect(try await status(lost) == "paid")
        let again = try await CrestCommand.run(reconcile + ["--json"], timeout: .seconds(120))
        #expect(again.status == 0, "\(again.output)")
        let run = try JSONSerialization.jsonObject(with: Data(again.output.utf8)) as? [String: Any]
        #expect(run?["healed"] as? Int == 0 && (run?["items"] as? [Any])?.isEmpty == true, "\(again.output)")

        // Now the statement shows the next success one unit off: an operator's to look at.
        var faults = try await simulatorClient.call(.GET, "/v1/faults").json
        faults["successWebhookLossRate"] = 0
        faults["statementAmountRate"] = 1
        let changed = try await simulatorClient.call(
            .PUT, "/v1/faults", json: String(decoding: try JSONSerialization.data(withJSONObject: faults), as: UTF8.self))
        #expect(changed.status == 200)
        let bob = try await paidOrder("bob")
        #expect(try await eventually(timeout: .seconds(90)) { try await status(bob) == "paid" }, "\(crest.log)")
        let reported = try await CrestCommand.run(reconcile, timeout: .seconds(120))
        #expect(reported.status == 1, "\(reported.output)")
        #expect(reported.output.contains("reported  amount-differs"), "\(reported.output)")
        // Prometheus sees it wait for an operator (the alert CrestReconciliationDifferencesOpen).
        let metrics = String(decoding: try await client.call(.GET, "/metrics").body, as: UTF8.self)
        #expect(metrics.contains("\ncrest_reconciliation_differences_open 1"), "\(metrics)")
        #expect(metrics.contains("\ncrest_ready 1"))
        // An operator resolves it; the next run still tells it, resolved, and exits 0.
        let told = try await CrestCommand.run(reconcile + ["--json"], timeout: .seconds(120))
        #expect(told.status == 1)
        let toldRun = try JSONSerialization.jsonObject(with: Data(told.output.utf8)) as? [String: Any]
        let item = try #require((toldRun?["items"] as? [[String: Any]])?.first)
        let resolved = try await client.call(
            .POST,
            "/v1/reconciliations/\(try #require(toldRun?["id"] as? String))/items/\(try #require(item["sequence"] as? Int))/resolution",
            headers: CrestClient.admin, json: #"{"note":"the provider corrects its statement"}"#)
        #expect(resolved.status == 200, "\(resolved.json)")
        let quiet = try await CrestCommand.run(reconcile, timeout: .seconds(120))
        #expect(quiet.status == 0, "\(quiet.output)")
        #expect(quiet.output.contains("resolved: the provider corrects its statement"), "\(quiet.output)")

        let bad = try await CrestCommand.run(["reconcile", "--from", "yesterday", "--admin-token", "x"], timeout: .seconds(60))
        #expect(bad.status != 0 && bad.output.contains("neither an RFC 3339 time nor a duration"), "\(bad.output)")
        await crest.expectGracefulStop()
        await simulator.expectGracefulStop()
    }
}
