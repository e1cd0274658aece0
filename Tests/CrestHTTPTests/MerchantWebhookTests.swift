import AsyncHTTPClient
import CrestCore
import CrestEngine
import CrestPayments
import CrestStore
import CrestTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOHTTP1
import Testing

/// A merchant's webhook receiver on a loopback port: records what it got, fails the first
/// `failures` requests with a 500.
final class MerchantReceiver: Sendable {
    struct Received: Sendable {
        var body: Data
        var signature: String?
        var eventID: String?
        var accepted: Bool

        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        var type: String? { json["type"] as? String }
        var sequence: Int? { json["sequence"] as? Int }
        var orderID: String? { (json["order"] as? [String: Any])?["id"] as? String }
    }

    let received = Locked<[Received]>([])
    private let failuresLeft: Locked<Int>

    init(failures: Int = 0) { failuresLeft = Locked(failures) }

    var accepted: [Received] { received.value.filter(\.accepted) }

    func with<T: Sendable>(_ body: @Sendable (String) async throws -> T) async throws -> T {
        let router = Router()
        router.post("hooks") { request, _ -> Response in
            var request = request
            let data = Data(try await request.collectBody(upTo: 1 << 20).readableBytesView)
            let fail = self.failuresLeft.withLock { left -> Bool in
                guard left > 0 else { return false }
                left -= 1
                return true
            }
            self.received.withLock {
                $0.append(
                    Received(
                        body: data, signature: request.headers[HTTPField.Name("Crest-Signature")!],
                        eventID: request.headers[HTTPField.Name("Crest-Event-Id")!], accepted: !fail))
            }
            return Response(status: fail ? .internalServerError : .ok)
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        return try await app.test(.live) { client in
            try await body("http://127.0.0.1:\(try #require(client.port))/hooks")
        }
    }
}

@Suite("Merchant webhooks")
struct MerchantWebhookTests {
    static let secret = "merchant-secret-0123456789"

    @Test("happy path: order.created and order.paid reach the merchant endpoint, signed")
    func paidIsDelivered() async throws {
        let receiver = MerchantReceiver()
        try await PaymentFixture.with { fixture in
            try await receiver.with { url in
                let created = try await fixture.admin(
                    .POST, "/v1/webhook-endpoints", json: #"{"url":"\#(url)","secret":"\#(Self.secret)"}"#)
                #expect(created.status == 201)
                #expect(created.object["secret"] as? String == Self.secret)
                let sale = try await fixture.sale(stock: 2)
                let placed = try await fixture.order(sale, buyer: "ana")
                try await fixture.pay(try await fixture.waitFor(placed.id) { $0.payment != nil })
                try await fixture.waitFor(placed.id) { $0.status == .paid }
                #expect(try await eventually { receiver.accepted.count == 2 })
                let events = receiver.accepted
                #expect(events.map(\.type) == ["order.created", "order.paid"])
                #expect(events.map(\.sequence) == [1, 2])
                let paid = events[1]
                #expect((paid.json["order"] as? [String: Any])?["status"] as? String == "paid")
                #expect(paid.orderID == placed.id.description)
                #expect(paid.eventID == paid.json["id"] as? String)
                for event in events {
                    try WebhookSignature.verify(event.signature, body: event.body, secret: Self.secret, now: Date())
                }
            }
        }
    }

    @Test("an order's timeline: each event with its time, and under it each endpoint's delivery, done or still owed")
    func timeline() async throws {
        let receiver = MerchantReceiver()
        try await PaymentFixture.with { fixture in
            try await receiver.with { url in
                let reached = try await fixture.admin(
                    .POST, "/v1/webhook-endpoints", json: #"{"url":"\#(url)","secret":"\#(Self.secret)"}"#)
                // An endpoint nobody listens on: its deliveries stay owed.
                let dead = try await fixture.admin(
                    .POST, "/v1/webhook-endpoints", json: #"{"url":"http://127.0.0.1:9/hooks","secret":"\#(Self.secret)"}"#)
                let (reachedID, deadID) = (try #require(reached.object["id"] as? String), try #require(dead.object["id"] as? String))
                let sale = try await fixture.sale(stock: 2)
                let placed = try await fixture.order(sale, buyer: "ana")
                try await fixture.pay(try await fixture.waitFor(placed.id) { $0.payment != nil })
                try await fixture.waitFor(placed.id) { $0.status == .paid }
                #expect(try await eventually { receiver.accepted.count == 2 })

                let answer = try await fixture.admin(.GET, "/v1/orders/\(placed.id)/timeline")
                #expect(answer.status == 200, "\(answer.object)")
                let timeline = answer.object
                #expect(timeline["orderId"] as? String == placed.id.description && timeline["status"] as? String == "paid")
                let stages = try #require(timeline["stages"] as? [[String: Any]])
                #expect(stages.map { $0["event"] as? String } == ["order.created", "order.paid"])
                #expect(stages.map { $0["sequence"] as? Int } == [1, 2])
                #expect(stages[0]["afterSeconds"] as? Double == 0)
                #expect((stages[1]["afterSeconds"] as? Double ?? -1) >= 0)
                for stage in stages {
                    let deliveries = try #require(stage["deliveries"] as? [[String: Any]])
                    let byEndpoint = Dictionary(uniqueKeysWithValues: deliveries.map { ($0["endpointId"] as? String ?? "", $0) })
                    #expect(Set(byEndpoint.keys) == [reachedID, deadID], "\(deliveries)")
                    #expect(byEndpoint[reachedID]?["deliveredAt"] is String && byEndpoint[reachedID]?["afterSeconds"] is Double)
                    #expect(byEndpoint[deadID]?["deliveredAt"] == nil, "owed, not delivered")
                }
                // Operators only; an unknown order is 404.
                var request = HTTPClientRequest(url: "http://127.0.0.1:\(fixture.crestPort)/v1/orders/\(placed.id)/timeline")
                request.headers.add(name: "Authorization", value: "Bearer \(try await HTTPFixture.pass(for: "ana"))")
                #expect(try await HTTPClient.crest.execute(request, timeout: .seconds(10)).status == .unauthorized)
                #expect(try await fixture.admin(.GET, "/v1/orders/\(OrderID.make())/timeline").status == 404)
            }
        }
    }

    @Test("an endpoint that fails 5 times then recovers receives every event, in order per order")
    func recoveringEndpoint() async throws {
        let receiver = MerchantReceiver(failures: 5)
        try await PaymentFixture.with { fixture in
            try await receiver.with { url in
                _ = try await fixture.engine.createWebhookEndpoint(url: url, secret: Self.secret, eventTypes: [])
                let sale = try await fixture.sale(stock: 5)
                let first = try await fixture.order(sale, buyer: "ana")
                let second = try await fixture.order(sale, buyer: "bob")
                _ = try await fixture.engine.cancelOrder(first.id)
                try await fixture.pay(try await fixture.waitFor(second.id) { $0.payment != nil })
                try await fixture.waitFor(second.id) { $0.status == .paid }
                #expect(try await eventually(timeout: .seconds(30)) { receiver.accepted.count == 4 })
                #expect(receiver.received.value.count(where: { !$0.accepted }) == 5)
                for (order, types) in [(first.id, ["order.created", "order.cancelled"]), (second.id, ["order.created", "order.paid"])] {
                    let delivered = receiver.accepted.filter { $0.orderID == order.description }
                    #expect(delivered.map(\.type) == types)
                    #expect(delivered.map(\.sequence) == [1, 2])
                }
                #expect(Set(receiver.accepted.compactMap(\.eventID)).count == 4, "each event once")
            }
        }
    }

    @Test(
        "a delivery whose connection the endpoint closed before answering is sent again at once, in the same attempt; a redirect is not followed"
    )
    func lostConnectionAndRedirect() async throws {
        try await PaymentFixture.with { fixture in
            // A kept-alive connection the endpoint closes as the delivery goes out.
            try await ScriptedServer.with([.close, .answer("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")]) { server in
                let job = try await Self.deliveryJob(to: server.port, of: fixture) { $0.state == .completed }
                #expect(job.attempt == 1 && job.lastError == nil, "\(job)")
                #expect(server.requests.count == 2)
                let eventIDs = server.requests.map { $0.split(separator: "\r\n").first { $0.lowercased().hasPrefix("crest-event-id:") } }
                #expect(eventIDs[0] != nil && eventIDs[0] == eventIDs[1], "\(server.requests)")
            }
            // A redirected POST may arrive as a GET without its body: a 3xx is a refusal, retried
            // with the job, not followed.
            let redirect = "HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
            try await ScriptedServer.with(Array(repeating: .answer(redirect), count: 20)) { server in
                let job = try await Self.deliveryJob(to: server.port, of: fixture) { $0.lastError != nil }
                #expect(job.lastError?.contains("307") == true, "\(job)")
                #expect(server.requests.allSatisfy { $0.hasPrefix("POST /hooks ") }, "\(server.requests)")
            }
        }
    }

    /// Adds an endpoint at `127.0.0.1:port/hooks` for `order.created`, places an order, and returns
    /// its delivery's job once `reached` holds.
    private static func deliveryJob(to port: Int, of fixture: PaymentFixture, reached: @escaping @Sendable (Job) -> Bool)
        async throws -> Job
    {
        let endpoint = try await fixture.engine.createWebhookEndpoint(
            url: "http://127.0.0.1:\(port)/hooks", secret: secret, eventTypes: [.created])
        let placed = try await fixture.order(try await fixture.sale(stock: 1), buyer: "ana")
        let job = Locked<Job?>(nil)
        let found = try await eventually(timeout: .seconds(30)) {
            let jobs = try await fixture.engine.jobs(matching: JobFilter(kind: WebhookJobs.deliver.name), after: nil, limit: 1000)
            let match = jobs.first {
                $0.payload.contains(placed.id.description) && $0.payload.contains(endpoint.id.description) && reached($0)
            }
            job.withLock { $0 = match }
            return match != nil
        }
        #expect(found, "no delivery of order \(placed.id) reached the state expected")
        try await fixture.engine.deleteWebhookEndpoint(endpoint.id)
        return try #require(job.value)
    }

    @Test("operators add, list and delete endpoints; bad input is a 400 problem")
    func endpoints() async throws {
        try await PaymentFixture.with { fixture in
            let created = try await fixture.admin(
                .POST, "/v1/webhook-endpoints", json: #"{"url":"https://shop.example/hooks","eventTypes":["order.paid"]}"#)
            #expect(created.status == 201)
            let id = try #require(created.object["id"] as? String)
            #expect((created.object["secret"] as? String)?.hasPrefix("whsec_") == true)
            #expect(created.object["eventTypes"] as? [String] == ["order.paid"])
            let listed = try await fixture.admin(.GET, "/v1/webhook-endpoints")
            let endpoints = listed.object["endpoints"] as? [[String: Any]] ?? []
            #expect(endpoints.map { $0["id"] as? String } == [id])
            #expect(endpoints.allSatisfy { $0["secret"] == nil }, "secrets are shown once")
            for body in [
                #"{"url":"ftp://shop.example/hooks"}"#, #"{"url":"not a url"}"#, #"{"url":"https://a.b/h","secret":"short"}"#,
                #"{"url":"https://a.b/h","eventTypes":["order.shipped"]}"#, #"{"secret":"0123456789abcdef"}"#, "[]",
            ] {
                let answer = try await fixture.admin(.POST, "/v1/webhook-endpoints", json: body)
                #expect(answer.status == 400, "\(body)")
            }
            #expect(try await fixture.admin(.DELETE, "/v1/webhook-endpoints/\(id)").status == 204)
            let again = try await fixture.admin(.DELETE, "/v1/webhook-endpoints/\(id)")
            #expect(again.status == 404)
            #expect(again.object["type"] as? String == "urn:crest:problem:webhook-endpoint-not-found")
            #expect(try await fixture.admin(.DELETE, "/v1/webhook-endpoints/nope").status == 404)
            #expect(((try await fixture.admin(.GET, "/v1/webhook-endpoints")).object["endpoints"] as? [Any])?.isEmpty == true)
        }
    }
}
