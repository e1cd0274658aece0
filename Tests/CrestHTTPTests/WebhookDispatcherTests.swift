import AsyncHTTPClient
import CrestCore
import CrestFixtures
import CrestPayments
import CrestSimulator
import CrestTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOPosix
import ServiceLifecycle
import Synchronization
import Testing

/// The simulator's webhook sender against a live receiver.
@Suite struct WebhookDispatcherTests {
    @Test(
        "an endpoint subscribed to the types Crest needs gets no created event and every later one; a subscription names known types, or all"
    )
    func subscription() throws {
        let dispatcher = WebhookDispatcher(
            target: nil, http: .shared, logger: Logger(label: "crest.test.dispatcher"),
            subscribed: ProviderAPI.Event.typesCrestNeeds)
        let simulator = PaymentSimulator(configuration: .init(publicURL: "http://127.0.0.1"), events: dispatcher)
        let intent = try simulator.create(.init(amount: 100, currency: "CNY", reference: "order-1"), key: "k")
        #expect(dispatcher.statistics.emitted == 0, "a created event was sent")
        _ = try simulator.simulate(intent.id, outcome: .succeeded)
        #expect(dispatcher.statistics.emitted == 2, "processing and succeeded")

        #expect(try WebhookDispatcher.subscription("all") == nil)
        #expect(
            try WebhookDispatcher.subscription("payment_intent.processing, payment_intent.succeeded") == [.processing, .succeeded])
        #expect(ProviderAPI.Event.typesCrestNeeds == [.processing, .failed, .succeeded, .refunded])
        let error = #expect(throws: WebhookDispatcher.SubscriptionError.self) {
            try WebhookDispatcher.subscription("payment_intent.succeeded,payment_intent.paid")
        }
        #expect(error?.description.contains(#"unknown webhook event type "payment_intent.paid""#) == true)
        #expect(throws: WebhookDispatcher.SubscriptionError.self) { try WebhookDispatcher.subscription("") }
    }

    @Test("a burst of events is sent with at most maxInFlight requests out, the others waiting their turn; every one delivered")
    func burstIsBounded() async throws {
        let logger = Logger(label: "crest.test.dispatcher")
        let receiver = SlowReceiver(pause: .milliseconds(20))
        // Loops of its own: the shared ones carry the other suites' crowds in a full run, and a
        // webhook queued behind them took seconds.
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let receiverApp = Application(
            router: receiver.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            eventLoopGroupProvider: .shared(loops), logger: logger)
        try await receiverApp.test(.live) { client in
            let port = try #require(client.port)
            try await HTTPClient(eventLoopGroupProvider: .shared(loops)).closing { http in
                let dispatcher = WebhookDispatcher(
                    target: .init(url: "http://127.0.0.1:\(port)/hook", secret: "s"), http: http, logger: logger,
                    maxInFlight: 3)
                let simulator = PaymentSimulator(configuration: .init(publicURL: "http://127.0.0.1"), events: dispatcher)
                let group = ServiceGroup(configuration: .init(services: [dispatcher], logger: logger))
                let run = Task { try await group.run() }
                let events = 30
                for index in 0..<events {
                    _ = try simulator.create(
                        .init(amount: 100, currency: "CNY", reference: "order-\(index)"), key: "key-\(index)")
                }
                let delivered = try await eventually(timeout: .seconds(120)) { dispatcher.statistics.delivered == events }
                await group.triggerGracefulShutdown()
                _ = await run.result
                #expect(delivered, "delivered \(dispatcher.statistics.delivered) of \(events)")
                // A request that outlived its deadline (a loaded machine) is sent again, and its
                // abandoned handler may still be running beside the three sent after it.
                let failed = dispatcher.statistics.failedAttempts
                #expect((events...(events + failed)).contains(receiver.received), "\(receiver.received) received, \(failed) failed")
                #expect(receiver.most <= 3 + failed, "\(receiver.most) webhooks were in at once (\(failed) attempts failed)")
                #expect(receiver.most >= 2, "sent one at a time: \(receiver.most)")
            }
        }
        try await loops.shutdownGracefully()
    }
}
