import NIOCore
import NIOHTTP1
import NIOPosix

/// One answer as the load generator sees it: the status, the replay marker and the body.
struct LoadResponse: Sendable {
    var status: Int
    var replayed: Bool
    /// The `Location` header: where a created order lives.
    var location: String?
    /// `Retry-After` in seconds, when the answer has one (429, 503).
    var retryAfter: Int?
    var body: ByteBuffer
}

/// One keep-alive HTTP/1.1 connection that carries one request at a time, as a browser or wrk does.
///
/// Deliberately thin: the generator shares the machine with the server it loads, and every cycle
/// it spends is a cycle the server does not get (wrk, in C, spends about a third of what NIO's
/// full client pipeline did per request). So a request is written as one buffer of bytes (no
/// `HTTPRequestHead` and encoder), its answer resumes the caller's continuation straight from the
/// pipeline (no promise), and the timeout is one timer per connection, re-armed only when it
/// fires (not one scheduled and cancelled per request). Answers are parsed by NIO's decoder.
final class LoadConnection: Sendable {
    struct Closed: Error {}
    struct TimedOut: Error {}
    /// A path or header that would break the request's framing (a CR or LF in it).
    struct Unframeable: Error, CustomStringConvertible {
        var text: String
        var description: String { "not sendable in an HTTP/1.1 request line or header: \(text.debugDescription)" }
    }

    private let channel: any Channel
    private let host: String
    /// The loop that carries this connection; a worker that runs on it (``EventLoopTaskExecutor``)
    /// sends and hears answers without a thread hop.
    var eventLoop: any EventLoop { channel.eventLoop }

    private init(channel: any Channel, host: String) {
        self.channel = channel
        self.host = host
    }

    static func connect(host: String, port: Int, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton)
        async throws -> LoadConnection
    {
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let decoder = HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes)
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(ResponseDecoding(decoder: decoder)))
                    try channel.pipeline.syncOperations.addHandler(ResponseCollector(decoder: decoder))
                }
            }
            .connect(host: host, port: port)
            .get()
        return LoadConnection(channel: channel, host: "\(host):\(port)")
    }

    var isActive: Bool { channel.isActive }

    /// Sends one request and waits for its whole answer; after `timeout` the connection is closed
    /// and `TimedOut` thrown (the connection is then of no further use). A JSON body is sent with
    /// its `Content-Type` and `Content-Length`. Called from the connection's own loop, nothing
    /// crosses threads.
    func send(
        method: HTTPMethod, path: String, headers extra: [(String, String)] = [], json body: String? = nil,
        timeout: TimeAmount
    ) async throws -> LoadResponse {
        let request = try encode(method: method, path: path, headers: extra, body: body)
        let deadline = NIODeadline.now() + timeout
        let channel = self.channel
        return try await withCheckedThrowingContinuation { continuation in
            let outgoing = ResponseCollector.Outgoing(
                method: method, request: request, deadline: deadline, continuation: continuation)
            if channel.eventLoop.inEventLoop {
                Self.write(outgoing, to: channel)
            } else {
                channel.eventLoop.execute { Self.write(outgoing, to: channel) }
            }
        }
    }

    /// On the loop: an active channel still has its collector, which then owns the continuation;
    /// a closed one may not (its handlers go when it closes), so the caller hears it here.
    private static func write(_ outgoing: ResponseCollector.Outgoing, to channel: any Channel) {
        guard channel.isActive else {
            outgoing.continuation.resume(throwing: Closed())
            return
        }
        channel.writeAndFlush(outgoing, promise: nil)
    }

    /// The request's bytes, as `HTTPRequestEncoder` would write them for these parts.
    private func encode(method: HTTPMethod, path: String, headers: [(String, String)], body: String?) throws
        -> ByteBuffer
    {
        try Self.checkFraming(path)
        for (name, value) in headers {
            try Self.checkFraming(name)
            try Self.checkFraming(value)
        }
        let bodyBytes = body?.utf8.count ?? 0
        var buffer = channel.allocator.buffer(capacity: 128 + path.utf8.count + host.utf8.count + 64 * headers.count + bodyBytes)
        buffer.writeString(method.rawValue)
        buffer.writeStaticString(" ")
        buffer.writeString(path)
        buffer.writeStaticString(" HTTP/1.1\r\nHost: ")
        buffer.writeString(host)
        buffer.writeStaticString("\r\n")
        for (name, value) in headers {
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        if let body {
            buffer.writeStaticString("Content-Type: application/json\r\nContent-Length: ")
            buffer.writeString(String(bodyBytes))
            buffer.writeStaticString("\r\n\r\n")
            buffer.writeString(body)
        } else {
            buffer.writeStaticString("\r\n")
        }
        return buffer
    }

    /// Throws `Unframeable` for text with a CR or LF, which would end a request line or header early.
    private static func checkFraming(_ text: String) throws {
        if text.utf8.contains(where: { $0 == 13 || $0 == 10 }) { throw Unframeable(text: text) }
    }

    func close() async {
        try? await channel.close()
    }
}

/// NIO's response decoder without its watch on outbound writes: it learns each request's method
/// (which says whether an answer has a body) from ``ResponseCollector`` instead, so requests can
/// go out as plain bytes.
private struct ResponseDecoding: ByteToMessageDecoder {
    typealias InboundOut = HTTPClientResponsePart
    let decoder: HTTPResponseDecoder

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        try decoder.decode(context: context, buffer: &buffer)
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decoder.decodeLast(context: context, buffer: &buffer, seenEOF: seenEOF)
    }

    func decoderAdded(context: ChannelHandlerContext) { decoder.decoderAdded(context: context) }
    func decoderRemoved(context: ChannelHandlerContext) { decoder.decoderRemoved(context: context) }
}

/// Writes each request, tells the decoder what was asked, and resumes the waiting caller with the
/// answer; fails what is pending when the connection goes away or the oldest request outlives its
/// deadline.
private final class ResponseCollector: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = Outgoing
    typealias OutboundOut = ByteBuffer

    struct Outgoing: Sendable {
        var method: HTTPMethod
        var request: ByteBuffer
        var deadline: NIODeadline
        var continuation: CheckedContinuation<LoadResponse, any Error>
    }

    private struct Pending {
        var deadline: NIODeadline
        var continuation: CheckedContinuation<LoadResponse, any Error>
    }

    private let decoder: HTTPResponseDecoder
    private var pending = CircularBuffer<Pending>(initialCapacity: 2)
    /// The last request's head, reused: telling the decoder then allocates nothing per request.
    private var lastHead: HTTPRequestHead?
    private var timer: Scheduled<Void>?
    private var status = 0
    private var replayed = false
    private var location: String?
    private var retryAfter: Int?
    private var body: ByteBuffer?

    init(decoder: HTTPResponseDecoder) {
        self.decoder = decoder
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let outgoing = unwrapOutboundIn(data)
        guard context.channel.isActive else {
            outgoing.continuation.resume(throwing: LoadConnection.Closed())
            promise?.fail(LoadConnection.Closed())
            return
        }
        pending.append(Pending(deadline: outgoing.deadline, continuation: outgoing.continuation))
        decoder.write(data: .head(head(for: outgoing.method)))
        if timer == nil { arm(context: context, at: outgoing.deadline) }
        context.write(wrapOutboundOut(outgoing.request), promise: promise)
    }

    private func head(for method: HTTPMethod) -> HTTPRequestHead {
        if let lastHead, lastHead.method == method { return lastHead }
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: "/")
        lastHead = head
        return head
    }

    /// The connection's one timer: when it fires, the oldest request is either late (everything
    /// pending fails and the connection closes) or not yet (the timer waits for its deadline).
    private func arm(context: ChannelHandlerContext, at deadline: NIODeadline) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: deadline) {
            let (collector, context) = loopBound.value
            collector.timer = nil
            guard let oldest = collector.pending.first else { return }
            if oldest.deadline <= .now() {
                // Closed before anyone hears of it: a caller told `TimedOut` finds the
                // connection inactive (and the close's own `Closed` finds nothing pending).
                let late = collector.takeAll()
                context.close(promise: nil)
                for request in late { request.continuation.resume(throwing: LoadConnection.TimedOut()) }
            } else {
                collector.arm(context: context, at: oldest.deadline)
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
            replayed = head.headers.first(name: "Idempotent-Replayed") == "true"
            location = head.headers.first(name: "Location")
            retryAfter = head.headers.first(name: "Retry-After").flatMap { Int($0) }
            body = nil
        case .body(var part):
            if body == nil { body = part } else { body!.writeBuffer(&part) }
        case .end:
            guard let answered = pending.popFirst() else { return }
            let response = LoadResponse(
                status: status, replayed: replayed, location: location, retryAfter: retryAfter, body: body ?? ByteBuffer())
            body = nil
            answered.continuation.resume(returning: response)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(LoadConnection.Closed())
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(error)
        context.close(promise: nil)
    }

    private func failAll(_ error: any Error) {
        for request in takeAll() { request.continuation.resume(throwing: error) }
    }

    /// Every pending request, no longer pending; the timer stops.
    private func takeAll() -> CircularBuffer<Pending> {
        timer?.cancel()
        timer = nil
        let waiting = pending
        pending.removeAll()
        return waiting
    }
}
