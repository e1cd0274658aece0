import CrestCore
import CrestEngine
import CrestFixtures
import CrestIdentity
import CrestTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import NIOEmbedded
import NIOHTTPTypes
import Prometheus
import Testing

@testable import CrestHTTP

/// Order attempts decided in the channel (`ChannelOrders`), part by part on an embedded channel: what it answers
/// never reaches the route (nothing is read inbound), and what it lets through reaches it whole.
@Suite("Order attempts decided in the channel")
struct ChannelOrdersTests {
    static let sale = SaleID("01a24214-54d9-7444-a5c0-5c9d57d6df88")!

    /// A channel with `ChannelOrders` over `limiter`; the sale's own limits known unless `known` is
    /// false. `limited`: the connection was answered `429` already (by the route), so the channel looks.
    static func channel(
        _ limiter: RateLimiter, buyers: BuyerAuthentication = .off, known: Bool = true, limited: Bool = true
    ) throws -> EmbeddedChannel {
        let limits = ChannelAdmission(limiter: limiter, buyers: buyers) { _ in known ? SaleLimits.none : nil }
        let channel = EmbeddedChannel(handler: ChannelOrders(writePath: nil, admission: limits))
        channel.remoteAddress = try SocketAddress(ipAddress: "192.0.2.7", port: 40_000)
        if limited { try routeAnswered(channel, .tooManyRequests) }
        return channel
    }

    /// The route answers a request of the connection with `status`.
    static func routeAnswered(_ channel: EmbeddedChannel, _ status: HTTPResponse.Status) throws {
        try channel.writeOutbound(HTTPResponsePart.head(HTTPResponse(status: status)))
        try channel.writeOutbound(HTTPResponsePart.end(nil))
        while try channel.readOutbound(as: HTTPResponsePart.self) != nil {}
    }

    static func attempt(key: String = "k1", headers: HTTPFields = [:]) -> HTTPRequest {
        var fields = headers
        fields[HTTPField.Name("Idempotency-Key")!] = key
        return HTTPRequest(method: .post, scheme: nil, authority: "x", path: "/v1/sales/\(sale)/orders", headerFields: fields)
    }

    /// Sends an attempt naming `buyer` in its body, in two body parts.
    static func send(_ channel: EmbeddedChannel, _ head: HTTPRequest, buyer: String) throws {
        try channel.writeInbound(HTTPRequestPart.head(head))
        try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(string: #"{"buyer":"\#(buyer)","#)))
        try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(string: #""quantity":1}"#)))
        try channel.writeInbound(HTTPRequestPart.end(nil))
    }

    /// The parts that went on to the route, as "head", "body:<text>", "end".
    static func passed(_ channel: EmbeddedChannel) throws -> [String] {
        var parts: [String] = []
        while let part = try channel.readInbound(as: HTTPRequestPart.self) {
            switch part {
            case .head: parts.append("head")
            case .body(let body): parts.append("body:" + String(buffer: body))
            case .end: parts.append("end")
            }
        }
        return parts
    }

    /// The answer written, if any: its head and body.
    static func answer(_ channel: EmbeddedChannel) throws -> (HTTPResponse, String)? {
        guard case .head(let head) = try channel.readOutbound(as: HTTPResponsePart.self) else { return nil }
        guard case .body(let body) = try channel.readOutbound(as: HTTPResponsePart.self),
            case .end = try channel.readOutbound(as: HTTPResponsePart.self)
        else { return nil }
        return (head, String(buffer: body))
    }

    static func limiter(buyer: RateLimit? = nil, address: RateLimit? = nil) -> RateLimiter {
        RateLimiter(limits: RateLimitTests.limits(buyer: buyer, address: address), clock: StoppedClock())
    }

    /// One attempt per buyer, and ana's already taken by the route: she is over her limit.
    static func anaOverLimit() throws -> RateLimiter {
        let limiter = limiter(buyer: RateLimit(rate: 1, burst: 1))
        _ = try limiter.check(buyer: "ana", sale: sale)
        return limiter
    }

    @Test("a buyer the body names past its rate is answered 429 here, with the route's headers; another buyer's attempt goes on whole")
    func buyerInBody() throws {
        let limiter = try Self.anaOverLimit()
        let channel = try Self.channel(limiter)

        try Self.send(channel, Self.attempt(), buyer: "ana")
        #expect(try Self.passed(channel).isEmpty, "the refused attempt never reaches the route")
        let (head, body) = try #require(try Self.answer(channel))
        #expect(head.status == .tooManyRequests)
        #expect(head.headerFields[.retryAfter] == "1")
        #expect(head.headerFields[HTTPField.Name("RateLimit")!] == #""buyer";r=0;t=1"#)
        #expect(head.headerFields[.contentType] == "application/problem+json")
        #expect(body.contains("urn:crest:problem:rate-limited"))
        #expect(body.contains(#""instance":"/v1/sales/\#(Self.sale)/orders""#))

        try Self.send(channel, Self.attempt(key: "k2"), buyer: "bob")
        #expect(try Self.passed(channel) == ["head", #"body:{"buyer":"bob","quantity":1}"#, "end"])
        #expect(try Self.answer(channel) == nil, "bob is the route's to answer")
        #expect(limiter.tracked.buyers == 1, "a look here takes no token and makes no bucket: bob's is the route's to take")
        try Self.routeAnswered(channel, .created)

        // bob was within his limits: the connection's next attempts go on unexamined (ana's too)
        // until the route answers one 429 again.
        try Self.send(channel, Self.attempt(key: "k3"), buyer: "ana")
        #expect(try Self.passed(channel).count == 4)
        try Self.routeAnswered(channel, .tooManyRequests)
        try Self.send(channel, Self.attempt(key: "k4"), buyer: "ana")
        #expect(try Self.passed(channel).isEmpty)
        #expect(try Self.answer(channel)?.0.status == .tooManyRequests)
        _ = try channel.finish()
    }

    @Test("a connection never answered 429 is not looked at: an admitted order pays nothing for the limits here")
    func notLimited() throws {
        let limiter = try Self.anaOverLimit()
        let channel = try Self.channel(limiter, limited: false)
        try channel.writeInbound(HTTPRequestPart.head(Self.attempt()))
        #expect(try Self.passed(channel) == ["head"], "passed at once, its body not held")
        _ = try channel.finish()
    }

    @Test("what the channel cannot tell goes on: no key, an Expect, a sale whose limits are not known, a body too long to hold")
    func passesOn() throws {
        let limiter = try Self.anaOverLimit()
        let channel = try Self.channel(limiter)
        try channel.writeInbound(
            HTTPRequestPart.head(HTTPRequest(method: .post, scheme: nil, authority: "x", path: "/v1/sales/\(Self.sale)/orders")))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        #expect(try Self.passed(channel) == ["head", "end"], "no Idempotency-Key: the route's 400")
        try channel.writeOutbound(HTTPResponsePart.end(nil))  // the route answered

        try Self.send(channel, Self.attempt(headers: [.expect: "100-continue"]), buyer: "ana")
        #expect(try Self.passed(channel).count == 4)
        try channel.writeOutbound(HTTPResponsePart.end(nil))

        let long = #"{"buyer":"ana","quantity":1,"note":"\#(String(repeating: "x", count: ChannelOrders.maxHeldBody))"}"#
        try channel.writeInbound(HTTPRequestPart.head(Self.attempt()))
        try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(string: long)))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        #expect(try Self.passed(channel) == ["head", "body:" + long, "end"])
        try channel.writeOutbound(HTTPResponsePart.end(nil))
        while try channel.readOutbound(as: HTTPResponsePart.self) != nil {}

        let unknown = try Self.channel(limiter, known: false)
        try Self.send(unknown, Self.attempt(), buyer: "ana")
        #expect(try Self.passed(unknown).count == 4, "a sale's own limits may differ: the route reads them")
        _ = try channel.finish()
        _ = try unknown.finish()
    }

    @Test("while an earlier request of the connection is being answered, an attempt goes on: answers keep their order")
    func pipelined() throws {
        let limiter = try Self.anaOverLimit()
        let channel = try Self.channel(limiter)
        try channel.writeInbound(HTTPRequestPart.head(HTTPRequest(method: .get, scheme: nil, authority: "x", path: "/healthz")))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        try Self.send(channel, Self.attempt(), buyer: "ana")
        #expect(try Self.passed(channel) == ["head", "end", "head", #"body:{"buyer":"ana","#, #"body:"quantity":1}"#, "end"])
        #expect(try Self.answer(channel) == nil)
        _ = try channel.finish()
    }

    @Test(
        "an address past its rate is refused at the head; with passes, a pass names its buyer (verified here the first time), a token that is no pass goes on"
    )
    func addressAndPasses() async throws {
        let addressLimited = Self.limiter(address: RateLimit(rate: 1, burst: 1))
        try addressLimited.check(address: "192.0.2.7")
        let channel = try Self.channel(addressLimited, buyers: try await HTTPFixture.passes())
        try channel.writeInbound(HTTPRequestPart.head(Self.attempt()))
        let (head, body) = try #require(try Self.answer(channel))
        #expect(head.status == .tooManyRequests)
        #expect(body.contains("address"))
        try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(string: #"{"quantity":1}"#)))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        #expect(try Self.passed(channel).isEmpty, "the refused attempt's body is dropped")
        _ = try channel.finish()

        let authentication = try await HTTPFixture.passes()
        guard case .passes(let verifier) = authentication else { throw CancellationError() }
        let known = try await HTTPFixture.pass(for: "ana")
        _ = try verifier.verify(known)
        let limiter = try Self.anaOverLimit()
        let withPasses = try Self.channel(limiter, buyers: authentication)
        try withPasses.writeInbound(HTTPRequestPart.head(Self.attempt(headers: [.authorization: "Bearer \(known)"])))
        #expect(try Self.answer(withPasses)?.0.status == .tooManyRequests, "ana's pass, verified before")
        #expect(try Self.passed(withPasses).isEmpty)
        try withPasses.writeInbound(HTTPRequestPart.end(nil))
        // A buyer's first pass is verified here: the crowd's first attempts are decided here too.
        let first = try await HTTPFixture.pass(for: "ana", perBuyerLimit: 2)
        try withPasses.writeInbound(HTTPRequestPart.head(Self.attempt(headers: [.authorization: "Bearer \(first)"])))
        #expect(try Self.answer(withPasses)?.0.status == .tooManyRequests, "ana's pass, never seen before")
        #expect(try Self.passed(withPasses).isEmpty)
        try withPasses.writeInbound(HTTPRequestPart.end(nil))
        // A token that is no pass (forged, or an operator's) is the route's to refuse or admit.
        var forged = Array(first)
        forged[forged.count - 2] = forged[forged.count - 2] == "A" ? "B" : "A"
        _ = try withPasses.finish()
        for token in [String(forged), HTTPFixture.adminToken] {
            let channel = try Self.channel(limiter, buyers: authentication)
            try channel.writeInbound(HTTPRequestPart.head(Self.attempt(headers: [.authorization: "Bearer \(token)"])))
            #expect(try Self.passed(channel) == ["head"], "\(token.prefix(12))… goes on to the route")
            _ = try channel.finish()
        }
    }

    /// A channel whose stock gate refuses from memory what `refusing` says (and records what it was
    /// asked), the risk rules empty unless `riskQuiet` is false; not yet answered 409.
    static func gateChannel(
        _ limiter: RateLimiter = limiter(), buyers: BuyerAuthentication = .off, riskQuiet: Bool = true,
        asked: Locked<[OrderRequest]> = Locked([]), refusing: @escaping @Sendable (OrderRequest) -> OrderError?
    ) throws -> EmbeddedChannel {
        let admission = ChannelAdmission(
            limiter: limiter, buyers: buyers, knownLimits: { _ in SaleLimits.none }, riskQuiet: { riskQuiet },
            refusalFromMemory: { request in
                asked.withLock { $0.append(request) }
                return refusing(request)
            })
        let channel = EmbeddedChannel(handler: ChannelOrders(writePath: nil, admission: admission))
        channel.remoteAddress = try SocketAddress(ipAddress: "192.0.2.7", port: 40_000)
        return channel
    }

    @Test(
        "a connection answered 409 has its next attempts refused here when the gate refuses them from memory, the buyer's tokens taken as the route takes them"
    )
    func soldOutInTheChannel() throws {
        let asked = Locked<[OrderRequest]>([])
        let limiter = Self.limiter(buyer: RateLimit(rate: 1, burst: 3))
        let channel = try Self.gateChannel(limiter, asked: asked) { _ in .soldOut }
        // Not answered 409 yet: the attempt goes on at once, nothing held, the gate not asked.
        try channel.writeInbound(HTTPRequestPart.head(Self.attempt()))
        #expect(try Self.passed(channel) == ["head"])
        try channel.writeInbound(HTTPRequestPart.end(nil))
        _ = try Self.passed(channel)
        try Self.routeAnswered(channel, .conflict)
        #expect(asked.value.isEmpty)

        for index in 2...4 {
            try Self.send(channel, Self.attempt(key: "k\(index)"), buyer: "ana")
            #expect(try Self.passed(channel).isEmpty, "the refused attempt never reaches the route")
            let (head, body) = try #require(try Self.answer(channel))
            #expect(head.status == .conflict)
            #expect(head.headerFields[.contentType] == "application/problem+json")
            #expect(head.headerFields[.server] == "crest" && head.headerFields[.date] != nil)
            #expect(body.contains("urn:crest:problem:sold-out"), "\(body)")
            #expect(body.contains(#""instance":"/v1/sales/\#(Self.sale)/orders""#))
        }
        #expect(asked.value.map(\.idempotencyKey) == ["k2", "k3", "k4"])
        #expect(asked.value.allSatisfy { $0.buyer == "ana" && $0.quantity == 1 && $0.saleID == Self.sale })
        // Three refusals took ana's three tokens: her fourth attempt is over her limit.
        try Self.send(channel, Self.attempt(key: "k5"), buyer: "ana")
        #expect(try Self.answer(channel)?.0.status == .tooManyRequests)
        #expect(asked.value.count == 3, "over the limit: 429 before the gate, as the route answers (the key not consumed)")
        _ = try channel.finish()
    }

    @Test("a buyer's limit reached is answered with that buyer's own limit, attempt after attempt on one connection")
    func buyerLimitsInTheChannel() throws {
        let channel = try Self.gateChannel { request in .buyerLimitReached(limit: request.buyer == "ana" ? 3 : 1) }
        try Self.routeAnswered(channel, .conflict)
        for (key, buyer, limit) in [("k1", "ana", 3), ("k2", "bob", 1), ("k3", "ana", 3)] {
            try Self.send(channel, Self.attempt(key: key), buyer: buyer)
            let (head, body) = try #require(try Self.answer(channel))
            #expect(head.status == .conflict)
            #expect(body.contains("urn:crest:problem:buyer-limit-reached") && body.contains("at most \(limit) unit"), "\(buyer): \(body)")
        }
        _ = try channel.finish()
    }

    @Test("what the gate lets through, or any risk rule, goes on whole to the route; then the connection is not looked at")
    func gateLetsThrough() throws {
        let admitting = try Self.gateChannel { _ in nil }
        try Self.routeAnswered(admitting, .conflict)
        try Self.send(admitting, Self.attempt(key: "k2"), buyer: "ana")
        #expect(try Self.passed(admitting) == ["head", #"body:{"buyer":"ana","quantity":1}"#, "end"])
        #expect(try Self.answer(admitting) == nil)
        try Self.routeAnswered(admitting, .created)
        try admitting.writeInbound(HTTPRequestPart.head(Self.attempt(key: "k3")))
        #expect(try Self.passed(admitting) == ["head"], "not held: the gate let the last one through")
        _ = try admitting.finish()

        let asked = Locked<[OrderRequest]>([])
        let risky = try Self.gateChannel(riskQuiet: false, asked: asked) { _ in .soldOut }
        try Self.routeAnswered(risky, .conflict)
        try Self.send(risky, Self.attempt(key: "k2"), buyer: "ana")
        #expect(try Self.passed(risky).count == 4, "risk rules are the route's to apply: passed as it came, nothing held")
        #expect(asked.value.isEmpty)
        _ = try risky.finish()

        // A body of another shape is the route's to decode.
        let odd = try Self.gateChannel { _ in .soldOut }
        try Self.routeAnswered(odd, .conflict)
        try odd.writeInbound(HTTPRequestPart.head(Self.attempt(key: "k2")))
        try odd.writeInbound(HTTPRequestPart.body(ByteBuffer(string: #"{"buyer":"an\u0061","quantity":1}"#)))
        try odd.writeInbound(HTTPRequestPart.end(nil))
        #expect(try Self.passed(odd).count == 3)
        _ = try odd.finish()
    }

    /// A channel that places orders: `placing` says how each attempt is taken; the answers of the
    /// submitted ones wait in `answers` until the test gives them.
    static func placingChannel(
        _ limiter: RateLimiter = limiter(), answers: Locked<[ChannelAdmission.Answer]>,
        placing: @escaping @Sendable (OrderRequest) -> CrestEngine.Engine.CallbackPlacement = { _ in .answering },
        refusing: @escaping @Sendable (OrderRequest) -> OrderError? = { _ in nil },
        stages: Locked<[String]> = Locked([]), requestMetrics: ChannelRequestMetrics = .shared,
        loop: EmbeddedEventLoop = EmbeddedEventLoop(), mailboxes: LoopMailboxes = LoopMailboxes()
    ) throws -> EmbeddedChannel {
        // The channel's request metrics are made at their first answer: after the tests' bootstrap.
        _ = TestMetrics.registry
        let admission = ChannelAdmission(
            limiter: limiter, buyers: .off, knownLimits: { _ in SaleLimits.none }, riskQuiet: { true },
            refusalFromMemory: refusing,
            place: { request, answer in
                let taken = placing(request)
                if taken == .answering { answers.withLock { $0.append(answer) } }
                return taken
            },
            recordPlacement: { stage, _ in stages.withLock { $0.append(stage.rawValue) } })
        // Reads asked for by what is behind the handler reach the socket's side through `reads`.
        let channel = EmbeddedChannel(
            handlers: [
                ReadCounter(),
                ChannelOrders(writePath: nil, admission: admission, requestMetrics: requestMetrics, mailboxes: mailboxes),
            ], loop: loop)
        channel.remoteAddress = try SocketAddress(ipAddress: "192.0.2.7", port: 40_000)
        return channel
    }

    /// Counts the reads that reach the socket's side of the pipeline.
    final class ReadCounter: ChannelOutboundHandler, @unchecked Sendable {
        typealias OutboundIn = Any
        var reads = 0

        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    static func reads(_ channel: EmbeddedChannel) throws -> Int {
        try channel.pipeline.syncOperations.handler(type: ReadCounter.self).reads
    }

    static func order(buyer: String) -> Order {
        let now = Date()
        return Order(
            id: OrderID.make(), saleID: sale, buyer: buyer, quantity: 1, amount: Money(amount: 1000, currency: Currency("CNY")!),
            status: .pendingPayment, createdAt: now, expiresAt: now.addingTimeInterval(900), updatedAt: now)
    }

    @Test(
        "an attempt memory can decide is placed here: answered 201 with the route's headers once its batch answers, the connection's next request (and then its reads) held until then"
    )
    func placedInTheChannel() throws {
        let answers = Locked<[ChannelAdmission.Answer]>([])
        let channel = try Self.placingChannel(Self.limiter(buyer: RateLimit(rate: 1, burst: 5)), answers: answers)
        try Self.send(channel, Self.attempt(key: "k1"), buyer: "ana")
        #expect(try Self.passed(channel).isEmpty, "placed here: the route never sees it")
        #expect(try Self.answer(channel) == nil, "not answered before its batch")
        // A client that waits for its answer keeps reading: nothing to hold.
        let readsBefore = try Self.reads(channel)
        channel.read()
        #expect(try Self.reads(channel) == readsBefore + 1, "nothing parked: the read goes on")
        // A pipelined request waits for the placed one's answer; the channel asks for no more reads.
        try channel.writeInbound(HTTPRequestPart.head(HTTPRequest(method: .get, scheme: nil, authority: "x", path: "/healthz")))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        #expect(try Self.passed(channel).isEmpty)
        channel.read()
        #expect(try Self.reads(channel) == readsBefore + 1, "no read while a parked request waits")
        let order = Self.order(buyer: "ana")
        let answer = try #require(answers.value.first)
        answer(.success(PlacedOrder(order: order, replayed: false)))
        channel.embeddedEventLoop.run()
        let (head, body) = try #require(try Self.answer(channel))
        #expect(head.status == .created)
        #expect(head.headerFields[.location] == "/v1/orders/\(order.id)")
        #expect(head.headerFields[.contentType] == "application/json; charset=utf-8")
        #expect(head.headerFields[HTTPField.Name("RateLimit")!] != nil, "the buyer's rate-limit headers, as the route sends them")
        #expect(head.headerFields[.idempotentReplayed] == nil)
        #expect(
            head.headerFields[.server] == "crest" && head.headerFields[.date]?.hasSuffix(" GMT") == true,
            "as Hummingbird stamps the route's")
        #expect(body.contains(#""id":"\#(order.id)""#) && body.contains(#""status":"pending_payment""#), "\(body)")
        #expect(try Self.passed(channel) == ["head", "end"], "then the pipelined request goes on")
        #expect(try Self.reads(channel) == readsBefore + 2, "and the read held is made")
        _ = try channel.finish()
    }

    @Test(
        "an answer handed back while the loop serves other connections goes out at the loop's next read of any of them, not after its turn"
    )
    func answeredBetweenReads() throws {
        let loop = EmbeddedEventLoop()
        let mailboxes = LoopMailboxes()
        let answers = Locked<[ChannelAdmission.Answer]>([])
        let placed = try Self.placingChannel(answers: answers, loop: loop, mailboxes: mailboxes)
        let other = try Self.placingChannel(
            answers: answers, placing: { _ in .refused(.soldOut) }, loop: loop, mailboxes: mailboxes)
        try Self.send(placed, Self.attempt(key: "k1"), buyer: "ana")
        let order = Self.order(buyer: "ana")
        let answer = try #require(answers.value.first)
        answer(.success(PlacedOrder(order: order, replayed: false)))
        #expect(try Self.answer(placed) == nil, "handed back, the loop's tasks not run yet")
        // Another connection of the same loop is read (its turn goes on): the answer goes first.
        try other.writeInbound(HTTPRequestPart.head(Self.attempt(key: "k2")))
        #expect(try Self.answer(placed)?.0.status == .created, "written at the other connection's read")
        // The task the answer also queued finds nothing left to run.
        loop.run()
        #expect(try Self.answer(placed) == nil, "answered once")
        try other.writeInbound(HTTPRequestPart.body(ByteBuffer(string: #"{"buyer":"bob","quantity":1}"#)))
        try other.writeInbound(HTTPRequestPart.end(nil))
        #expect(try Self.answer(other)?.0.status == .conflict)
        _ = try placed.finish()
        _ = try other.finish()
    }

    @Test(
        "an attempt placed here is one of http_server_active_requests (POST) until its batch answers it, as the route's are; one refused at once never is"
    )
    func activeWhilePlaced() throws {
        let registry = PrometheusCollectorRegistry()
        let metrics = ChannelRequestMetrics(factory: CrestHTTPServer.metricsFactory(registry: registry))
        let active = #"http_server_active_requests{http_request_method="POST"}"#
        let answers = Locked<[ChannelAdmission.Answer]>([])
        let channel = try Self.placingChannel(
            answers: answers, placing: { $0.idempotencyKey == "full" ? .refused(.soldOut) : .answering }, requestMetrics: metrics)
        try Self.send(channel, Self.attempt(key: "k1"), buyer: "ana")
        #expect(TestMetrics.value(of: active, in: registry) == 1, "waiting for its batch")
        let answer = try #require(answers.value.first)
        answer(.success(PlacedOrder(order: Self.order(buyer: "ana"), replayed: false)))
        channel.embeddedEventLoop.run()
        #expect(try Self.answer(channel)?.0.status == .created)
        #expect(TestMetrics.value(of: active, in: registry) == 0, "answered")
        try Self.send(channel, Self.attempt(key: "full"), buyer: "bob")
        #expect(try Self.answer(channel)?.0.status == .conflict)
        #expect(TestMetrics.value(of: active, in: registry) == 0, "refused at once")
        _ = try channel.finish()
    }

    @Test("the channel's answers carry the Date header in RFC 9110's IMF-fixdate")
    func httpDate() {
        #expect(HTTPDate.format(0) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(HTTPDate.format(951_782_400) == "Tue, 29 Feb 2000 00:00:00 GMT")
        #expect(HTTPDate.format(1_796_449_476) == "Sat, 05 Dec 2026 05:44:36 GMT")
    }

    @Test(
        "on a connection answered 409, a sold-out crowd's attempt is refused from the gate's memory without being placed; one it lets through is placed"
    )
    func soldOutBeforePlacing() throws {
        let answers = Locked<[ChannelAdmission.Answer]>([])
        let placed = Locked<[String]>([])
        let channel = try Self.placingChannel(
            answers: answers,
            placing: { request in
                placed.withLock { $0.append(request.idempotencyKey) }
                return .answering
            },
            refusing: { $0.buyer == "ana" ? .soldOut : nil })
        try Self.routeAnswered(channel, .conflict)
        try Self.send(channel, Self.attempt(key: "k1"), buyer: "ana")
        #expect(try Self.answer(channel)?.0.status == .conflict)
        #expect(placed.value.isEmpty, "refused from memory: no place taken, nothing to place")
        try Self.send(channel, Self.attempt(key: "k2"), buyer: "bob")
        #expect(placed.value == ["k2"])
        _ = try channel.finish()
    }

    @Test("a connection closed while its attempt waits for the batch: the answer that comes after goes nowhere, harmlessly")
    func closedWhilePlacing() throws {
        let answers = Locked<[ChannelAdmission.Answer]>([])
        let channel = try Self.placingChannel(answers: answers)
        try Self.send(channel, Self.attempt(key: "k1"), buyer: "ana")
        try channel.close().wait()
        let answer = try #require(answers.value.first)
        answer(.success(PlacedOrder(order: Self.order(buyer: "ana"), replayed: false)))
        channel.embeddedEventLoop.run()
        #expect(try Self.passed(channel).isEmpty)
    }

    @Test("what the batch fails with is answered as the route answers it; what memory cannot decide goes on whole")
    func placedFailuresAndElsewhere() throws {
        let answers = Locked<[ChannelAdmission.Answer]>([])
        let stages = Locked<[String]>([])
        let channel = try Self.placingChannel(
            answers: answers,
            placing: { request in
                switch request.buyer {
                case "ana": .answering
                case "bob": .refused(.soldOut)
                case "dan": .overloaded(WritePathFull(reason: .queueFull))
                default: .elsewhere
                }
            }, stages: stages)
        try Self.send(channel, Self.attempt(key: "k1"), buyer: "ana")
        let answer = try #require(answers.value.first)
        answer(.failure(UnavailableError(reason: "the store could not commit the reservation")))
        channel.embeddedEventLoop.run()
        let (unavailable, problem) = try #require(try Self.answer(channel))
        #expect(unavailable.status == .serviceUnavailable && unavailable.headerFields[.retryAfter] != nil)
        #expect(problem.contains("urn:crest:problem:"), "\(problem)")

        try Self.send(channel, Self.attempt(key: "k2"), buyer: "bob")
        #expect(try Self.answer(channel)?.0.status == .conflict)
        try Self.send(channel, Self.attempt(key: "k4"), buyer: "dan")
        let (overloaded, _) = try #require(try Self.answer(channel))
        #expect(overloaded.status == .serviceUnavailable && overloaded.headerFields[.retryAfter] != nil)
        try Self.send(channel, Self.attempt(key: "k3"), buyer: "cid")
        #expect(try Self.passed(channel) == ["head", #"body:{"buyer":"cid","quantity":1}"#, "end"])
        #expect(try Self.answer(channel) == nil)
        // Timed for the three attempts taken here; the one gone to the route is timed there, once.
        #expect(stages.value == ["admission", "admission", "admission"])
        _ = try channel.finish()
    }

    @Test(
        "served as crest serve is: orders placed in the channel are durable and readable at once, a replay gets the same order, and each is counted in hb_requests"
    )
    func placedLive() async throws {
        try await HTTPFixture.with(buyerAuthentication: .off, channelRefusals: true) { fixture in
            try await fixture.app.test(.live) { client in
                let sale = try await client.createSale(stock: 100)
                let before = try await Self.createdOrders(client)
                var ids: [String] = []
                // The first attempt loads the sale's gate in the route; the rest are the channel's.
                for index in 0..<20 {
                    let placed = try await client.placeOrder(sale: sale, key: "k\(index)", buyer: "b\(index)")
                    #expect(placed.status == .created)
                    let id = try #require(placed.object["id"] as? String)
                    #expect(placed.headers[.location] == "/v1/orders/\(id)")
                    try await client.execute(uri: "/v1/orders/\(id)", method: .get, headers: HTTPFixture.adminHeaders) {
                        #expect($0.status == .ok, "readable right after its answer")
                    }
                    ids.append(id)
                }
                let replay = try await client.placeOrder(sale: sale, key: "k3", buyer: "b3")
                #expect(replay.status == .created && replay.headers[.idempotentReplayed] == "true")
                #expect(replay.object["id"] as? String == ids[3])
                try await client.placeOrder(sale: sale, key: "k3", buyer: "b4").expectProblem(
                    .unprocessableContent, "idempotency-key-reused")
                try await client.execute(uri: "/v1/sales/\(sale)", method: .get) { response in
                    #expect((response.object["stock"] as? [String: Int])?["reserved"] == 20)
                }
                let counted = try await Self.createdOrders(client) - before
                // At least: the registry is the process's, and other tests place orders meanwhile.
                #expect(counted >= 21, "twenty orders and the replay: \(counted)")
            }
        }
    }

    /// The `201`s of the order route so far, from `/metrics`.
    static func createdOrders(_ client: some TestClientProtocol) async throws -> Int {
        let text = try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
        var total = 0.0
        for line in text.split(separator: "\n") where line.hasPrefix("hb_requests{") {
            guard line.contains(#"http_route="/v1/sales/{saleID}/orders""#), line.contains(#"http_response_status_code="201""#),
                let value = line.split(separator: " ").last.flatMap({ Double($0) })
            else { continue }
            total += value
        }
        return Int(total)
    }

    @Test(
        "served as crest serve is: a sold-out sale's crowd gets the route's answers, a key refused in the channel stays refused once stock returns, a new key gets it"
    )
    func soldOutLive() async throws {
        try await HTTPFixture.with(channelRefusals: true) { fixture in
            try await fixture.app.test(.live) { client in
                let sale = try await client.createSale(stock: 1)
                let placed = try await client.placeOrder(sale: sale, key: "a1", buyer: "ana")
                #expect(placed.status == .created)
                // The route answers bob's first 409 (and verifies his pass); the next ones are the channel's.
                for key in ["b1", "b2", "b3"] {
                    try await client.placeOrder(sale: sale, key: key, buyer: "bob").expectProblem(.conflict, "sold-out")
                }
                try await client.placeOrder(sale: sale, key: "c1", buyer: "cid").expectProblem(.conflict, "sold-out")
                let id = try #require(placed.object["id"] as? String)
                try await client.execute(
                    uri: "/v1/orders/\(id)/cancel", method: .post, headers: try await HTTPFixture.buyerHeaders("ana")
                ) { #expect($0.status == .ok) }
                // The unit is back: a refused key replays its refusal, a new key takes the unit.
                try await client.placeOrder(sale: sale, key: "b3", buyer: "bob").expectProblem(.conflict, "sold-out")
                #expect(try await client.placeOrder(sale: sale, key: "b4", buyer: "bob").status == .created)
                try await client.placeOrder(sale: sale, key: "b5", buyer: "bob").expectProblem(.conflict, "buyer-limit-reached")
                try await client.placeOrder(sale: sale, key: "c2", buyer: "cid").expectProblem(.conflict, "sold-out")
                try await client.execute(uri: "/v1/sales/\(sale)", method: .get) { response in
                    #expect((response.object["stock"] as? [String: Int])?["reserved"] == 1)
                }
            }
        }
    }
}
