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
        let problem = Problem.from(WritePathFull(reason: .queueFull))!
        let body = problem.body(instance: head.path ?? "")
        var fields: HTTPFields = [
            .contentType: Problem.mediaType, .contentLength: "\(body.readableBytes)",
            HTTPField.Name("Retry-After")!: problem.headers["Retry-After"] ?? "1",
        ]
        if head.headerFields[.connection] == "close" { fields[.connection] = "close" }
        context.write(wrapOutboundOut(.head(HTTPResponse(status: .serviceUnavailable, headerFields: fields))), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        if fields[.connection] == "close" {
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        } else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
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

    /// `POST /v1/sales/{saleID}/orders`.
    static func isOrderAttempt(_ head: HTTPRequest) -> Bool {
        guard head.method == .post, let path = head.path else { return false }
        let route = path.split(separator: "?", maxSplits: 1).first ?? ""
        return route.hasPrefix("/v1/sales/") && route.hasSuffix("/orders")
            && route.utf8.count > "/v1/sales//orders".utf8.count
            && !route.dropFirst("/v1/sales/".count).dropLast("/orders".count).contains("/")
    }
}
