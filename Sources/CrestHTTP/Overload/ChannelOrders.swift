import CrestCore
import CrestEngine
import CrestIdentity
import HTTPTypes
import Metrics
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Decides order attempts in the channel itself, before Hummingbird makes a request, a task and a
/// context for them — a crowd's refusal must cost the server less than serving anything, and an
/// order the memory can decide needs no router, middleware or task:
/// - `503 overloaded` while the write path is full (counted in `crest_write_path_refusals_total`);
/// - `429 rate-limited` when the attempt is over a rate limit of its address, its buyer or its sale,
///   as far as the channel can tell without verifying anything (a peek: no token taken). Only on a
///   connection that was answered `429` since its last attempt within its limits, or where the
///   channel places orders: a client over its limit keeps sending on its connection, and a buyer
///   within it pays nothing for the look (holding the body to read its buyer, for nothing more,
///   cost an admitted order 8%).
/// - `409 sold-out` / `buyer-limit-reached` when the sale's stock gate refuses the attempt from
///   memory (`Engine.refusalFromMemory`: one node's store only), the risk rules are known to be
///   empty and no rate limit refuses it — the route's own decisions in the route's order, with the
///   rate limits' tokens taken as the route takes them and the refusal remembered for the key.
///   Only on a connection that was answered `409` since its last attempt the gate let through: a
///   sold-out sale's crowd keeps trying.
/// - `201` with the order, where the channel places orders (`ChannelAdmission.places`: no tracer
///   is bootstrapped), for every attempt it can read as above that `Engine.placeOrder(_:answer:)`
///   takes: a place on the write path (at once, or after a wait in its queue), the gate's decision
///   from memory; the answer is written once its batch committed (or its wait ran out: `503`),
///   with the route's body and headers, and counted in the route's request metrics
///   (`ChannelRequestMetrics`). A refusal from the gate is answered as above; what it cannot take
///   goes on to the route, nothing taken.
/// A buyer's pass is verified here (`BuyerPassVerifier.verify`: its first time a signature check,
/// then from memory), so a buyer's first attempt is decided here as the next ones are. Whatever
/// the channel cannot tell (a token that is no current pass, a body of another shape, a sale whose
/// limits are not known, risk rules) goes on to the route.
///
/// The refused request's body is read and dropped; the connection stays open for the client's
/// retry. Only when no earlier request of the connection is still being answered (a pipelined
/// request's answer must not overtake the one before it). A refusal here is counted in
/// `crest_problems_total` by kind, as the route's are, but not in the HTTP request metrics (it
/// never becomes a request) and it makes no trace span.
final class ChannelOrders: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// Largest body held while an attempt is looked at; a longer one goes on to the route (an
    /// order's body is some 40 bytes).
    static let maxHeldBody = 4 * 1024

    /// An attempt held until its body is in, to read the buyer it names and its quantity.
    private struct HeldAttempt {
        var head: HTTPRequest
        var sale: SaleID
        var overrides: SaleLimits
        /// The pass's buyer, verified (passes on); `nil` when the body names the buyer.
        var pass: VerifiedPass?
        var body: ByteBuffer
        /// When its head came.
        var arrived: ContinuousClock.Instant
    }

    /// An attempt placed here whose batch has not answered yet.
    private struct Placing {
        var head: HTTPRequest
        var arrived: ContinuousClock.Instant
        /// The rate limits' headers of the buyer's attempt, for its `201`.
        var rateLimitHeaders: HTTPFields
    }

    private let writePath: WritePathLimit?
    private let admission: ChannelAdmission?
    /// Requests passed on whose answer has not ended yet.
    private var answering = 0
    /// The body of a refused request is being dropped.
    private var dropping = false
    /// A `429` was written on this connection since an attempt was last found within its limits.
    private var limited = false
    /// A `409` was written on this connection since the gate last let an attempt through.
    private var conflicted = false
    private var held: HeldAttempt?
    /// The attempt placed here that waits for its batch: the connection's next requests wait too
    /// (their parts kept in `parked`, no more read once some are), so that no answer overtakes its
    /// answer.
    private var placing: Placing?
    private var parked: [HTTPRequestPart] = []
    /// A read asked for while an attempt was placing and parts were parked, made once it is answered.
    private var readPending = false
    /// The last refusal's answer made here, by kind: a connection of a crowd sends its attempts to
    /// one sale, so its problem body (whose `instance` is the path) and head are made once.
    private var lastAnswer: (path: String, kind: Int, head: HTTPResponse, body: ByteBuffer)?

    private let requestMetrics: ChannelRequestMetrics
    private let mailboxes: LoopMailboxes
    /// The mailbox of this connection's loop: answers of attempts placed here come back through
    /// it, and every read here first runs what waits in it (`LoopMailbox`).
    private var mailbox: LoopMailbox?

    /// `requestMetrics`: the process's own (`.shared`), or a test's, made with a factory of its own.
    /// `mailboxes`: shared by a listener's connections (one mailbox per loop).
    init(
        writePath: WritePathLimit?, admission: ChannelAdmission? = nil, requestMetrics: ChannelRequestMetrics = .shared,
        mailboxes: LoopMailboxes = LoopMailboxes()
    ) {
        self.writePath = writePath
        self.admission = admission
        self.requestMetrics = requestMetrics
        self.mailboxes = mailboxes
    }

    func handlerAdded(context: ChannelHandlerContext) {
        mailbox = mailboxes.mailbox(for: context.eventLoop)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Answers ready for this loop's connections go out before this read is served.
        mailbox?.runWaiting()
        let part = unwrapInboundIn(data)
        if placing != nil {
            parked.append(part)
            return
        }
        if dropping {
            if case .end = part { dropping = false }
            return
        }
        if held != nil {
            holding(part, context: context)
            return
        }
        guard case .head(let head) = part, answering == 0, Self.isOrderAttempt(head) else {
            pass(part, context: context)
            return
        }
        if let writePath, (try? writePath.refuseIfFull()) == nil {
            ProblemCounts.shared.count(Self.overloadedKind)
            answer(head, cached(Self.overloaded, kind: 0, path: head.path ?? ""), bodyToCome: true, context: context)
            return
        }
        // Only what the route would look at the same way: an attempt with its key, no `Expect`
        // (its client waits for a 100 before it sends the body), on a sale whose limits are known.
        guard let admission, limited || (conflicted || admission.places) && admission.riskQuiet(),
            head.headerFields[.idempotencyKey] != nil,
            head.headerFields[.expect] == nil, let path = head.path,
            let sale = SaleID(String(decoding: Self.saleSegment(of: path), as: UTF8.self)),
            let overrides = admission.knownLimits(sale)
        else {
            pass(part, context: context)
            return
        }
        var known: VerifiedPass?
        if case .passes(let verifier) = admission.buyerSource {
            // The pass's buyer, verified here (from memory after its first time); a token that is
            // no current pass for this sale (or no pass: only a JWT is looked at, an operator's
            // token is the route's to tell) goes on to the route, which refuses it, from memory.
            let token = AdminCredential.bearerToken(in: head.headerFields)
            known = token.flatMap { AdminCredential.isJWTShaped($0) ? try? verifier.verify($0) : nil }
                .flatMap { $0.admits(sale) ? $0 : nil }
            if limited, overLimit(head, sale: sale, overrides: overrides, buyer: known?.buyer, bodyToCome: true, context: context) {
                return
            }
            // The gate needs the buyer's pass, and the body's quantity.
            guard conflicted || admission.places, admission.riskQuiet(), known != nil else {
                pass(part, context: context)
                return
            }
        }
        held = HeldAttempt(
            head: head, sale: sale, overrides: overrides, pass: known, body: context.channel.allocator.buffer(capacity: 64),
            arrived: .now)
    }

    /// Reads are held while an attempt waits for its batch only once the connection sent more
    /// than it (parts parked): a client that waits for its answer, as nearly all do, keeps its
    /// read interest, and the loop makes no `epoll_ctl` pair per order to drop and take it back.
    /// What a pipelining client can make this hold is one read's worth of parts.
    func read(context: ChannelHandlerContext) {
        if placing != nil, !parked.isEmpty {
            readPending = true
        } else {
            context.read()
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let response) where response.status == .tooManyRequests: limited = true
        case .head(let response) where response.status == .conflict: conflicted = true
        case .end: answering = max(0, answering - 1)
        default: break
        }
        context.write(data, promise: promise)
    }

    /// A part of a held attempt: kept until the end, when the attempt is decided; a body too long
    /// to hold lets the attempt go on as it is.
    private func holding(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        guard var attempt = held else { return }
        switch part {
        case .body(var chunk):
            attempt.body.writeBuffer(&chunk)
            if attempt.body.readableBytes > Self.maxHeldBody {
                held = nil
                release(attempt.head, body: attempt.body, context: context)
            } else {
                held = attempt
            }
        case .end:
            held = nil
            if !refuses(attempt, context: context) {
                release(attempt.head, body: attempt.body, context: context)
                context.fireChannelRead(wrapInboundOut(part))
            }
        case .head:
            // A head before the held one ended cannot come from the decoder; let both go on.
            held = nil
            release(attempt.head, body: attempt.body, context: context)
            pass(part, context: context)
        }
    }

    /// Decides a held attempt as the route would, as far as the channel can: `429` over a rate
    /// limit, then the gate's `409` from memory or — where the channel places orders — the order
    /// placed. `false` when it goes on to the route.
    private func refuses(_ attempt: HeldAttempt, context: ChannelHandlerContext) -> Bool {
        guard let admission else { return false }
        let body = PlaceOrderBody(plainJSON: attempt.body)
        let buyer = attempt.pass?.buyer ?? body?.buyer
        // The route looks at the limits before the gate, and a 429 consumes no key: over a limit,
        // the gate is not asked (it would remember its refusal for the key).
        if limited || conflicted || admission.places,
            overLimit(attempt.head, sale: attempt.sale, overrides: attempt.overrides, buyer: buyer, bodyToCome: false, context: context)
        {
            return true
        }
        // Then its risk rules (none), the body's buyer against the pass, the gate.
        guard conflicted || admission.places, let body, let buyer, body.buyer == nil || body.buyer == buyer,
            admission.riskQuiet(), let key = attempt.head.headerFields[.idempotencyKey]
        else { return false }
        let request = OrderRequest(
            saleID: attempt.sale, idempotencyKey: key, buyer: buyer, quantity: body.quantity,
            perBuyerLimit: attempt.pass?.perBuyerLimit)
        let refusal: OrderError
        if conflicted, let error = admission.refusalFromMemory(request) {
            // A sold-out sale's crowd: the gate's refusal, without taking a place on the write path
            // or making the answer's function (4 µs of a refusal's ~30).
            refusal = error
        } else if let place = admission.place {
            conflicted = false
            // Timed to here; recorded only for an attempt taken here (the route times its own).
            let admitting = ContinuousClock.now - attempt.arrived
            let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
            let mailbox = mailbox ?? mailboxes.mailbox(for: context.eventLoop)
            // Active from here until its answer, as the route's requests are (`answered` comes
            // once, only for an attempt taken: `.answering`).
            let active = requestMetrics.active
            active.increment()
            let answered: ChannelAdmission.Answer = { placed in
                active.decrement()
                mailbox.post { bound.value.handler.answerPlaced(placed, context: bound.value.context) }
            }
            let placement = place(request, answered)
            if placement != .answering { active.decrement() }
            if placement != .elsewhere { admission.recordPlacement(.admission, admitting) }
            switch placement {
            case .elsewhere:
                return false
            case .refused(let error):
                refusal = error
            case .overloaded(let full):
                _ = takeTokens(of: attempt, buyer: buyer, context: context)
                ProblemCounts.shared.count(Self.overloadedKind)
                answer(
                    attempt.head, cached(Problem.from(full)!, kind: 0, path: attempt.head.path ?? ""), bodyToCome: false, context: context)
                return true
            case .answering:
                let headers = takeTokens(of: attempt, buyer: buyer, context: context)
                placing = Placing(head: attempt.head, arrived: attempt.arrived, rateLimitHeaders: headers ?? [:])
                return true
            }
        } else {
            conflicted = false
            return false
        }
        _ = takeTokens(of: attempt, buyer: buyer, context: context)
        let problem = Problem.from(refusal)!
        ProblemCounts.shared.count(problem.kind)
        // A sold-out answer is the same for every attempt on the path; a limit's names the buyer's
        // own limit (a pass may carry one), so it is made each time.
        let response =
            refusal == .soldOut
            ? cached(problem, kind: 1, path: attempt.head.path ?? "") : Self.answer(problem, instance: attempt.head.path ?? "")
        answer(attempt.head, response, bodyToCome: false, context: context)
        return true
    }

    /// Takes the tokens the route would have taken for an attempt decided here, and returns the
    /// buyer's rate-limit headers (`nil` past a limit). Should the last token go between the look
    /// before the decision and here (another connection's attempt), the answer stays the
    /// decision's: a refusal is remembered for the key, an order is placed, and a 429 must not
    /// consume a key.
    private func takeTokens(of attempt: HeldAttempt, buyer: String, context: ChannelHandlerContext) -> HTTPFields? {
        guard let limiter = admission?.limiter else { return nil }
        let address = limiter.clientAddress(peer: context.channel.remoteAddress?.ipAddress, headers: attempt.head.headerFields)
        _ = try? limiter.check(address: address)
        return try? limiter.check(buyer: buyer, sale: attempt.sale, overrides: attempt.overrides)
    }

    /// The `201` of an attempt placed here, or the problem of its failure; then the connection's
    /// parked requests go on. On the channel's event loop.
    private func answerPlaced(_ placed: Result<PlacedOrder, any Error>, context: ChannelHandlerContext) {
        guard let attempt = placing else { return }
        placing = nil
        let response: (head: HTTPResponse, body: ByteBuffer)
        switch placed {
        case .success(let placed):
            let answering = ContinuousClock.now
            let body = JSONObjectWriter.object(OrderBody(placed.order).write)
            var fields: HTTPFields = [
                .contentType: OrderBody.contentType, .contentLength: "\(body.readableBytes)",
                .location: "/v1/orders/\(placed.order.id)",
            ]
            if placed.replayed { fields[.idempotentReplayed] = "true" }
            fields.append(contentsOf: attempt.rateLimitHeaders)
            response = (HTTPResponse(status: .created, headerFields: fields), body)
            admission?.recordPlacement(.answer, .now - answering)
        case .failure(let error):
            let problem = Problem.from(error) ?? Problem(kind: "internal", title: "Internal error", status: .internalServerError)
            ProblemCounts.shared.count(problem.kind)
            response = Self.answer(problem, instance: attempt.head.path ?? "")
        }
        requestMetrics.record(response.head.status, since: attempt.arrived)
        answer(attempt.head, response, bodyToCome: false, context: context)
        while placing == nil, !parked.isEmpty {
            channelRead(context: context, data: wrapInboundOut(parked.removeFirst()))
        }
        if placing == nil, readPending {
            readPending = false
            context.read()
        }
    }

    /// Answers the attempt `429` when a rate limit would refuse it (a peek: no token taken); `false`
    /// when none would.
    private func overLimit(
        _ head: HTTPRequest, sale: SaleID, overrides: SaleLimits, buyer: String?, bodyToCome: Bool,
        context: ChannelHandlerContext
    ) -> Bool {
        guard let limiter = admission?.limiter, limiter.isLimiting || overrides != .none else {
            limited = false  // no limit is on: nothing here can be over one
            return false
        }
        let address = limiter.clientAddress(peer: context.channel.remoteAddress?.ipAddress, headers: head.headerFields)
        guard let refused = limiter.refusal(address: address, buyer: buyer, sale: sale, overrides: overrides) else {
            limited = false
            return false
        }
        let problem = Problem.from(refused)!
        ProblemCounts.shared.count(problem.kind)
        answer(head, Self.answer(problem, instance: head.path ?? ""), bodyToCome: bodyToCome, context: context)
        return true
    }

    /// Passes a held attempt on: its head and its body so far.
    private func release(_ head: HTTPRequest, body: ByteBuffer, context: ChannelHandlerContext) {
        pass(.head(head), context: context)
        if body.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(.body(body))) }
    }

    private func pass(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        if case .head = part { answering += 1 }
        context.fireChannelRead(wrapInboundOut(part))
    }

    /// Writes a refusal; the rest of the request's body, if any is to come, is dropped.
    private func answer(
        _ request: HTTPRequest, _ response: (head: HTTPResponse, body: ByteBuffer), bodyToCome: Bool,
        context: ChannelHandlerContext
    ) {
        dropping = bodyToCome
        let closing = request.headerFields[.connection] == "close"
        var head = response.head
        // What Hummingbird adds to the route's answers.
        head.headerFields[.date] = HTTPDate.now
        head.headerFields[.server] = CrestHTTPServer.serverName
        if closing { head.headerFields[.connection] = "close" }
        // Through `write`, as the route's answers go: a 429 or 409 marks the connection.
        write(context: context, data: wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(response.body)), promise: nil)
        if closing {
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        } else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }

    /// The answer to `problem` on `path`, made once per connection while the path and `kind` stay.
    private func cached(_ problem: @autoclosure () -> Problem, kind: Int, path: String) -> (head: HTTPResponse, body: ByteBuffer) {
        if let last = lastAnswer, last.kind == kind, last.path == path { return (last.head, last.body) }
        let (head, body) = Self.answer(problem(), instance: path)
        lastAnswer = (path, kind, head, body)
        return (head, body)
    }

    /// A problem's answer as the channel writes it: its status and headers, and its body.
    private static func answer(_ problem: Problem, instance: String) -> (head: HTTPResponse, body: ByteBuffer) {
        let body = problem.body(instance: instance)
        var fields = problem.headers
        fields[.contentType] = Problem.mediaType
        fields[.contentLength] = "\(body.readableBytes)"
        return (HTTPResponse(status: HTTPResponse.Status(code: problem.status), headerFields: fields), body)
    }

    /// The write path's refusal, and its kind counted per refusal without making its problem.
    private static let overloaded = Problem.from(WritePathFull(reason: .queueFull))!
    private static let overloadedKind = overloaded.kind
    private static let salesPrefix = "/v1/sales/".utf8
    private static let ordersSuffix = "/orders".utf8

    /// `POST /v1/sales/{saleID}/orders`, a query allowed. Read as bytes: it is asked of every
    /// request's head, and `String`'s character view (split, prefix and suffix by `Character`)
    /// cost 7% of the server's CPU in a crowd of refusals.
    static func isOrderAttempt(_ head: HTTPRequest) -> Bool {
        guard head.method == .post, let path = head.path, path.utf8.starts(with: salesPrefix) else { return false }
        let route = route(of: path)
        // `{saleID}/orders`: a sale id of one byte or more, without a slash, then the suffix.
        guard route.count > ordersSuffix.count, route.suffix(ordersSuffix.count).elementsEqual(ordersSuffix) else {
            return false
        }
        return !route.dropLast(ordersSuffix.count).contains(UInt8(ascii: "/"))
    }

    /// The path after `/v1/sales/`, without its query.
    private static func route(of path: String) -> Substring.UTF8View {
        let bytes = path.utf8[...]
        let end = bytes.firstIndex(of: UInt8(ascii: "?")) ?? bytes.endIndex
        return bytes[bytes.index(bytes.startIndex, offsetBy: salesPrefix.count)..<end]
    }

    /// The `{saleID}` of an order attempt's path (`isOrderAttempt`).
    static func saleSegment(of path: String) -> Substring.UTF8View {
        route(of: path).dropLast(ordersSuffix.count)
    }
}

/// What the channel needs to refuse an order attempt as the route would (`ChannelOrders`): the
/// route's own rate limiter, how buyers are known, each sale's own limits as last read, whether the
/// risk rules are known to be empty, and the stock gates' refusals from memory.
package struct ChannelAdmission: Sendable {
    let limiter: RateLimiter
    let buyerSource: BuyerAuthentication
    /// A sale's own limits when known without asking the store (`Engine.knownLimits(of:)`); an
    /// attempt on a sale whose limits are not known goes on to the route, which reads them.
    let knownLimits: @Sendable (SaleID) -> SaleLimits?
    /// Whether no risk rule can refuse or count an attempt now (`RiskGate.isQuiet`).
    let riskQuiet: @Sendable () -> Bool
    /// The gate's refusal from memory, taken (`Engine.refusalFromMemory`).
    let refusalFromMemory: @Sendable (OrderRequest) -> OrderError?
    /// Places an attempt that memory can decide, its answer to come (`Engine.placeOrder(_:answer:)`);
    /// `nil` where the channel only refuses.
    let place: Place?
    typealias Place = @Sendable (OrderRequest, _ answer: @escaping Answer) -> Engine.CallbackPlacement
    typealias Answer = @Sendable (Result<PlacedOrder, any Error>) -> Void
    /// Times a stage of placing an order that the channel ran (`Engine.recordPlacement`).
    let recordPlacement: @Sendable (EngineMetrics.PlacementStage, Duration) -> Void

    /// Whether the channel places orders, not only refuses them.
    var places: Bool { place != nil }

    /// The route's `limiter` and `risk` rules, shared with `CrestHTTPServer.router`. With
    /// `placesOrders` the channel also places the orders memory can decide — where no tracer is
    /// bootstrapped: such an order makes no span, and the route's spans are what a tracer wants.
    package init(limiter: RateLimiter, buyers: BuyerAuthentication, engine: Engine, risk: RiskGate, placesOrders: Bool) {
        let place: Place = { [engine] request, answer in engine.placeOrder(request, answer: answer) }
        self.init(
            limiter: limiter, buyers: buyers, knownLimits: { [engine] in engine.knownLimits(of: $0) },
            riskQuiet: { [risk] in risk.isQuiet }, refusalFromMemory: { [engine] in engine.refusalFromMemory($0) },
            place: placesOrders ? place : nil,
            recordPlacement: { [engine] in engine.recordPlacement($0, $1) })
    }

    init(
        limiter: RateLimiter, buyers: BuyerAuthentication, knownLimits: @escaping @Sendable (SaleID) -> SaleLimits?,
        riskQuiet: @escaping @Sendable () -> Bool = { false },
        refusalFromMemory: @escaping @Sendable (OrderRequest) -> OrderError? = { _ in nil },
        place: Place? = nil,
        recordPlacement: @escaping @Sendable (EngineMetrics.PlacementStage, Duration) -> Void = { _, _ in }
    ) {
        self.limiter = limiter
        buyerSource = buyers
        self.knownLimits = knownLimits
        self.riskQuiet = riskQuiet
        self.refusalFromMemory = refusalFromMemory
        self.place = place
        self.recordPlacement = recordPlacement
    }
}

/// The HTTP request metrics of the order attempts the channel answers after placing them, under
/// the names and dimensions Hummingbird's `MetricsMiddleware` gives the route's
/// (`hb_requests`, `http_server_request_duration_seconds`): placed in the channel or by the route,
/// an order is counted once, in the same series; and while it waits for its batch it is one of
/// `http_server_active_requests` (method `POST`), as the route's requests are. (Refusals made in
/// the channel, answered at once, are counted in `crest_problems_total` only, as before.)
final class ChannelRequestMetrics: Sendable {
    /// The process's: its series are made at their first use, after the metrics system's bootstrap.
    static let shared = ChannelRequestMetrics(factory: nil)
    static let route = "/v1/sales/{saleID}/orders"

    private let ownFactory: (any MetricsFactory)?
    private let activeMeter = Mutex<Meter?>(nil)

    /// `factory`: `nil` for the metrics system's.
    init(factory: (any MetricsFactory)?) {
        ownFactory = factory
    }

    /// Where the series are made: read when each is first made, after the bootstrap.
    private var factory: any MetricsFactory { ownFactory ?? MetricsSystem.factory }

    /// The middleware's own series for `POST` (the same label and dimensions are one gauge).
    var active: Meter {
        activeMeter.withLock { meter in
            if let meter { return meter }
            let made = Meter(
                label: "http.server.active_requests", dimensions: [("http.request.method", "POST")],
                factory: factory)
            meter = made
            return made
        }
    }

    private let byStatus = Mutex<[Int: (requests: Counter, duration: Timer)]>([:])

    func record(_ status: HTTPResponse.Status, since arrived: ContinuousClock.Instant) {
        let metrics = byStatus.withLock { byStatus in
            if let metrics = byStatus[status.code] { return metrics }
            let dimensions = [
                ("http.route", Self.route), ("http.request.method", "POST"), ("http.response.status_code", "\(status.code)"),
            ]
            let metrics = (
                Counter(label: "hb.requests", dimensions: dimensions, factory: factory),
                Timer(
                    label: "http.server.request.duration", dimensions: dimensions, preferredDisplayUnit: .seconds,
                    factory: factory)
            )
            byStatus[status.code] = metrics
            return metrics
        }
        metrics.requests.increment()
        metrics.duration.record(duration: .now - arrived)
    }
}
