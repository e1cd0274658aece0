import CrestEngine
import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Answers an order attempt `503 overloaded` in the channel itself while the write path is full,
/// before Hummingbird makes a request, a task and a context for it: a crowd's refusal must cost
/// the server less than serving anything. The request's body is read and dropped; the connection
/// stays open for the client's retry.
///
/// Only when no earlier request of the connection is still being answered (a pipelined request's
/// answer must not overtake the one before it). The attempt is counted in
/// `crest_write_path_refusals_total`, not in the HTTP request metrics (it never reaches them).
final class FastRefusal: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let writePath: WritePathLimit
    /// Requests passed on whose answer has not ended yet.
    private var answering = 0
    /// The body of a refused request is being dropped.
    private var dropping = false
    /// The last refusal's answer: a connection of a crowd sends its attempts to one sale, so its
    /// problem body (whose `instance` is the path) and head are made once, not per refusal.
    private var lastRefusal: (path: String, head: HTTPResponse, body: ByteBuffer)?

    init(writePath: WritePathLimit) {
        self.writePath = writePath
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if dropping {
            if case .end = part { dropping = false }
            return
        }
        guard case .head(let head) = part, answering == 0, Self.isOrderAttempt(head), refuses() else {
            if case .head = part { answering += 1 }
            context.fireChannelRead(data)
            return
        }
        dropping = true
        let (response, body) = refusal(for: head.path ?? "")
        let closing = head.headerFields[.connection] == "close"
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
    private func refusal(for path: String) -> (HTTPResponse, ByteBuffer) {
        if let last = lastRefusal, last.path == path { return (last.head, last.body) }
        let problem = Problem.from(WritePathFull(reason: .queueFull))!
        let body = problem.body(instance: path)
        let fields: HTTPFields = [
            .contentType: Problem.mediaType, .contentLength: "\(body.readableBytes)",
            HTTPField.Name("Retry-After")!: problem.headers["Retry-After"] ?? "1",
        ]
        let head = HTTPResponse(status: .serviceUnavailable, headerFields: fields)
        lastRefusal = (path, head, body)
        return (head, body)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { answering = max(0, answering - 1) }
        context.write(data, promise: promise)
    }

    private func refuses() -> Bool {
        do {
            try writePath.refuseIfFull()
            return false
        } catch {
            return true
        }
    }

    /// `POST /v1/sales/{saleID}/orders`, a query allowed. Read as bytes: it is asked of every
    /// request's head, and `String`'s character view (split, prefix and suffix by `Character`)
    /// cost 7% of the server's CPU in a crowd of refusals.
    static func isOrderAttempt(_ head: HTTPRequest) -> Bool {
        guard head.method == .post, let path = head.path else { return false }
        let prefix = "/v1/sales/".utf8
        let suffix = "/orders".utf8
        let bytes = path.utf8
        guard bytes.starts(with: prefix) else { return false }
        let end = bytes.firstIndex(of: UInt8(ascii: "?")) ?? bytes.endIndex
        let route = bytes[bytes.index(bytes.startIndex, offsetBy: prefix.count)..<end]
        // `{saleID}/orders`: a sale id of one byte or more, without a slash, then the suffix.
        guard route.count > suffix.count, route.suffix(suffix.count).elementsEqual(suffix) else { return false }
        return !route.dropLast(suffix.count).contains(UInt8(ascii: "/"))
    }
}
