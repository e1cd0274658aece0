import CrestCore
import CrestEngine
import CrestIdentity
import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Refuses order attempts in the channel itself, before Hummingbird makes a request, a task and a
/// context for them — a crowd's refusal must cost the server less than serving anything:
/// - `503 overloaded` while the write path is full (counted in `crest_write_path_refusals_total`);
/// - `429 rate-limited` when the attempt is over a rate limit of its address, its buyer or its sale
///   (`ChannelRateLimits`), as far as the channel can tell without verifying anything; any attempt
///   it cannot tell about goes on to the route, which applies the same limits (and takes the tokens).
///   Only on a connection that was answered `429` since its last attempt within its limits: a
///   client over its limit keeps sending on its connection, and a buyer within it pays nothing
///   for the look (holding the body to read its buyer cost an admitted order 8%).
///
/// The refused request's body is read and dropped; the connection stays open for the client's
/// retry. Only when no earlier request of the connection is still being answered (a pipelined
/// request's answer must not overtake the one before it). A refusal here is counted in
/// `crest_problems_total` by kind, as the route's are, but not in the HTTP request metrics (it
/// never becomes a request).
final class FastRefusal: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// Largest body held while an attempt's rate limits are checked; a longer one goes on to the
    /// route (an order's body is some 40 bytes).
    static let maxHeldBody = 4 * 1024

    private let writePath: WritePathLimit?
    private let rateLimits: ChannelRateLimits?
    /// Requests passed on whose answer has not ended yet.
    private var answering = 0
    /// The body of a refused request is being dropped.
    private var dropping = false
    /// A `429` was written on this connection since an attempt was last found within its limits.
    private var limited = false
    /// An attempt held until its body is in, to read the buyer it names: its head and sale, its
    /// body so far.
    private var held: (head: HTTPRequest, sale: SaleID, overrides: SaleLimits, body: ByteBuffer)?
    /// The last write-path refusal's answer: a connection of a crowd sends its attempts to one
    /// sale, so its problem body (whose `instance` is the path) and head are made once.
    private var lastRefusal: (path: String, head: HTTPResponse, body: ByteBuffer)?

    init(writePath: WritePathLimit?, rateLimits: ChannelRateLimits? = nil) {
        self.writePath = writePath
        self.rateLimits = rateLimits
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
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
            let (response, body) = writePathRefusal(for: head.path ?? "")
            answer(head, response, body, context: context)
            return
        }
        // Only what the route would look at its limits for: an attempt with its key, no `Expect`
        // (its client waits for a 100 before it sends the body), on a sale whose limits are known
        // — and only when some limit is on.
        guard limited, let rateLimits, head.headerFields[.idempotencyKey] != nil, head.headerFields[.expect] == nil,
            let path = head.path,
            let sale = SaleID(String(decoding: Self.saleSegment(of: path), as: UTF8.self)),
            let overrides = rateLimits.knownLimits(sale), rateLimits.limiter.isLimiting || overrides != .none
        else {
            pass(part, context: context)
            return
        }
        switch rateLimits.buyerSource {
        case .passes(let verifier):
            // The pass's buyer when it was verified before; otherwise the address and the sale.
            let token = AdminCredential.bearerToken(in: head.headerFields)
            let known = token.flatMap { verifier.remembered($0) }.flatMap { $0.admits(sale) ? $0 : nil }
            if !refuses(head, sale: sale, overrides: overrides, buyer: known?.buyer, bodyToCome: true, context: context) {
                pass(part, context: context)
            }
        case .off:
            // The body names the buyer: hold the attempt until it is in.
            held = (head, sale, overrides, context.channel.allocator.buffer(capacity: 64))
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let response) where response.status == .tooManyRequests: limited = true
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
            let buyer = PlaceOrderBody(plainJSON: attempt.body)?.buyer
            let refused = refuses(
                attempt.head, sale: attempt.sale, overrides: attempt.overrides, buyer: buyer, bodyToCome: false, context: context)
            if !refused {
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

    /// Answers the attempt `429` when a rate limit would refuse it; `false` when none would.
    private func refuses(
        _ head: HTTPRequest, sale: SaleID, overrides: SaleLimits, buyer: String?, bodyToCome: Bool,
        context: ChannelHandlerContext
    ) -> Bool {
        guard let rateLimits else { return false }
        let address = rateLimits.limiter.clientAddress(
            peer: context.channel.remoteAddress?.ipAddress, headers: head.headerFields)
        guard let refused = rateLimits.limiter.refusal(address: address, buyer: buyer, sale: sale, overrides: overrides)
        else {
            limited = false
            return false
        }
        let problem = Problem.from(refused)!
        ProblemCounts.shared.count(problem.kind)
        let (response, body) = Self.answer(problem, instance: head.path ?? "")
        dropping = bodyToCome
        write(head, response, body, context: context)
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
    private func answer(_ request: HTTPRequest, _ response: HTTPResponse, _ body: ByteBuffer, context: ChannelHandlerContext) {
        ProblemCounts.shared.count(Self.overloadedKind)
        dropping = true
        write(request, response, body, context: context)
    }

    private func write(_ request: HTTPRequest, _ response: HTTPResponse, _ body: ByteBuffer, context: ChannelHandlerContext) {
        let closing = request.headerFields[.connection] == "close"
        var answer = response
        if closing { answer.headerFields[.connection] = "close" }
        context.write(wrapOutboundOut(.head(answer)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        if closing {
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        } else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }

    /// The `503 overloaded` answer for an attempt on `path`.
    private func writePathRefusal(for path: String) -> (HTTPResponse, ByteBuffer) {
        if let last = lastRefusal, last.path == path { return (last.head, last.body) }
        let (head, body) = Self.answer(Problem.from(WritePathFull(reason: .queueFull))!, instance: path)
        lastRefusal = (path, head, body)
        return (head, body)
    }

    /// A problem's answer as the channel writes it: its status and headers, and its body.
    private static func answer(_ problem: Problem, instance: String) -> (HTTPResponse, ByteBuffer) {
        let body = problem.body(instance: instance)
        var fields = problem.headers
        fields[.contentType] = Problem.mediaType
        fields[.contentLength] = "\(body.readableBytes)"
        return (HTTPResponse(status: HTTPResponse.Status(code: problem.status), headerFields: fields), body)
    }

    /// The kind of the write path's refusal, counted per refusal without making its problem.
    private static let overloadedKind = Problem.from(WritePathFull(reason: .queueFull))!.kind
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

/// What the channel needs to refuse an order attempt over a rate limit (`FastRefusal`): the
/// route's own limiter, how buyers are known, and each sale's own limits as last read.
package struct ChannelRateLimits: Sendable {
    let limiter: RateLimiter
    let buyerSource: BuyerAuthentication
    /// A sale's own limits when known without asking the store (`Engine.knownLimits(of:)`); an
    /// attempt on a sale whose limits are not known goes on to the route, which reads them.
    let knownLimits: @Sendable (SaleID) -> SaleLimits?

    package init(limiter: RateLimiter, buyers: BuyerAuthentication, engine: Engine) {
        self.init(limiter: limiter, buyers: buyers) { [engine] in engine.knownLimits(of: $0) }
    }

    init(limiter: RateLimiter, buyers: BuyerAuthentication, knownLimits: @escaping @Sendable (SaleID) -> SaleLimits?) {
        self.limiter = limiter
        buyerSource = buyers
        self.knownLimits = knownLimits
    }
}
