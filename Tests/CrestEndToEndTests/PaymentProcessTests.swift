import AsyncHTTPClient
import CrestFixtures
import CrestTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@Suite("crest serve with crest psp-sim, as processes")
struct PaymentProcessTests {
    @Test("an order gets its payment from the simulator process; paid there, it ends paid when its window closes")
    func serveWithSimulator() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-e2e-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        // No webhook URL: the simulator cannot tell Crest, so Crest learns of the payment by asking.
        let simulator = try await CrestProcess(
            arguments: ["psp-sim", "--host", "127.0.0.1", "--port", "0", "--webhook-secret", "e2e", "--log-level", "warning"],
            listening: "psp-sim listening on")
        let crest = try await CrestProcess(
            dataDirectory: directory,
            extraArguments: [
                "--provider-url", "http://127.0.0.1:\(simulator.port)", "--provider-webhook-secret", "e2e",
            ])
        let client = CrestClient(http: .crest, port: crest.port)
        // The window leaves time to create and pay the payment before it closes, on a loaded run too
        // (creating it took over 6 s once while the whole suite ran on two cores).
        let sale = try await client.createSale(stock: 3, adminToken: CrestProcess.adminToken, paymentWindowSeconds: 20)
        let placed = try await client.order(sale: sale, key: "k1", buyer: "ana")
        let orderID = try #require(placed.id)
        let paymentID = try await client.paymentID(of: orderID)
        #expect(paymentID != nil, "no payment was created at the simulator")
        let id = try #require(paymentID)
        let simulatorClient = CrestClient(http: .crest, port: simulator.port)
        let paid = try await simulatorClient.call(
            .POST, "/v1/payment_intents/\(id)/simulate", json: #"{"outcome":"succeeded"}"#)
        #expect(paid.status == 200)
        var status: String?
        let settled = try await eventually(timeout: .seconds(90)) {
            status = try await client.call(.GET, "/v1/orders/\(orderID)", headers: CrestClient.admin).json["status"] as? String
            return status != "pending_payment"
        }
        #expect(settled)
        #expect(status == "paid", "expiry must ask the provider, which says succeeded")
        #expect(try await client.stock(sale: sale) == ["total": 3, "available": 2, "reserved": 0, "sold": 1])
        await crest.expectGracefulStop()
        await simulator.expectGracefulStop()
    }

    @Test("a restarted psp-sim with the same seed gives new payment and event ids: orders placed after the restart are paid")
    func restartedSimulator() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-e2e-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        // The simulator's port is chosen first: Crest is told it, and the restarted simulator takes it again.
        let simulatorPort = freeLoopbackPort()
        let crest = try await CrestProcess(
            dataDirectory: directory,
            extraArguments: [
                "--provider-url", "http://127.0.0.1:\(simulatorPort)", "--provider-webhook-secret", "e2e",
            ])
        let client = CrestClient(http: .crest, port: crest.port)
        let simulatorArguments = [
            "psp-sim", "--host", "127.0.0.1", "--port", "\(simulatorPort)", "--webhook-secret", "e2e", "--seed", "1",
            "--webhook-url", "http://127.0.0.1:\(crest.port)/v1/webhooks/provider", "--log-level", "warning",
        ]
        let sale = try await client.createSale(stock: 2, adminToken: CrestProcess.adminToken)
        var paymentIDs: [String] = []
        for (run, buyer) in ["ana", "bob"].enumerated() {
            let simulator = try await CrestProcess(arguments: simulatorArguments, listening: "psp-sim listening on")
            let orderID = try #require(try await client.order(sale: sale, key: "k-\(buyer)", buyer: buyer).id)
            let paymentID = try await client.paymentID(of: orderID, timeout: .seconds(90))
            #expect(paymentID != nil, "run \(run): no payment for the order:\n\(crest.log)")
            let id = try #require(paymentID)
            paymentIDs.append(id)
            let simulatorClient = CrestClient(http: .crest, port: simulator.port)
            let paid = try await simulatorClient.call(
                .POST, "/v1/payment_intents/\(id)/simulate", json: #"{"outcome":"succeeded"}"#)
            #expect(paid.status == 200)
            // Told by the webhook (whose event id must be new to Crest), well before the order's window ends.
            let settled = try await eventually(timeout: .seconds(90)) {
                try await client.call(.GET, "/v1/orders/\(orderID)", headers: CrestClient.admin).json["status"] as? String == "paid"
            }
            #expect(settled, "run \(run): the order was not paid:\n\(crest.log)")
            await simulator.expectGracefulStop()
        }
        #expect(Set(paymentIDs).count == 2, "the restarted simulator repeated a payment id: \(paymentIDs)")
        #expect(!crest.log.contains("UNIQUE constraint"), "\(crest.log)")
        await crest.expectGracefulStop()
    }

    @Test(
        "crest psp-sim sends up to --webhook-max-in-flight webhooks at once (more than an HTTP client's default 8); a value out of range or an unknown event type is refused"
    )
    func simulatorWebhooksAtOnce() async throws {
        let (status, output) = try await CrestCommand.run(
            ["psp-sim", "--host", "127.0.0.1", "--port", "0", "--webhook-max-in-flight", "0"], timeout: .seconds(5))
        #expect(status != nil && status != 0, "\(output)")
        #expect(output.contains("webhook-max-in-flight must be 1…1,024"), "\(output)")
        let (typeStatus, typeOutput) = try await CrestCommand.run(
            ["psp-sim", "--host", "127.0.0.1", "--port", "0", "--webhook-events", "payment_intent.paid"], timeout: .seconds(5))
        #expect(typeStatus != nil && typeStatus != 0, "\(typeOutput)")
        #expect(typeOutput.contains(#"unknown webhook event type "payment_intent.paid""#), "\(typeOutput)")

        // Each webhook is held until the test has seen how many are out at once, at most 8 s: below
        // the simulator's 10 s request timeout, so that no delivery is abandoned and sent again.
        let receiver = SlowReceiver(pause: .seconds(8))
        // Loops of its own: the shared ones carry the other suites' crowds in a full run.
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let receiverApp = Application(
            router: receiver.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            eventLoopGroupProvider: .shared(loops))
        try await receiverApp.test(.live) { receiverClient in
            let port = try #require(receiverClient.port)
            let simulator = try await CrestProcess(
                arguments: [
                    "psp-sim", "--host", "127.0.0.1", "--port", "0", "--webhook-secret", "e2e", "--log-level", "warning",
                    "--webhook-url", "http://127.0.0.1:\(port)/hook", "--webhook-max-in-flight", "16",
                ],
                listening: "psp-sim listening on")
            let api = CrestClient(http: .crest, port: simulator.port)
            let events = 24
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<events {
                    group.addTask {
                        try await api.call(
                            .POST, "/v1/payment_intents", headers: [("Idempotency-Key", "k\(index)")],
                            json: #"{"amount":100,"currency":"CNY","reference":"order-\#(index)"}"#
                        ).status
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.allSatisfy { (200..<300).contains($0) }, "\(statuses)")
            // A sender allowed 8 (an HTTP client's default connections to one host) never gets here.
            let sixteen = try await eventually(timeout: .seconds(60)) { receiver.most >= 16 }
            #expect(sixteen && receiver.most == 16, "\(receiver.most) webhooks were in at once")
            receiver.release()
            let delivered = try await eventually(timeout: .seconds(60)) { receiver.received >= events }
            #expect(delivered, "\(receiver.received) of \(events) webhooks received")
            await simulator.expectGracefulStop()
        }
        try await loops.shutdownGracefully()
    }
}
