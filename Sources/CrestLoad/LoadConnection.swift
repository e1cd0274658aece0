import NIOCore
import NIOHTTP1
import NIOPosix

/// One answer as the load generator sees it: the status, the replay marker and the body.
struct LoadResponse: Sendable {
    var status: Int
    var replayed: Bool
    /// The `Location` header: where a created order lives.
    var location: String?
    var body: ByteBuffer
}

/// One keep-alive HTTP/1.1 connection that carries one request at a time, as a browser or wrk does.
///
/// Deliberately thin (NIO's HTTP codec and a promise per request): the generator shares the
/// machine with the server it loads, and every cycle it spends is a cycle the server does not get.
final class LoadConnection: Sendable {
    struct Closed: Error {}
    struct TimedOut: Error {}

    private let channel: any Channel
    private let host: String
    /// The loop that carries this connection; a worker that runs on it (``EventLoopIsolation``)
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
                    // The generator writes its own well-formed headers; checking them again costs the
                    // cycles the server under load would otherwise get.
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(enableOutboundHeaderValidation: false)
                    try channel.pipeline.syncOperations.addHandler(ResponseCollector())
                }
            }
            .connect(host: host, port: port)
            .get()
        return LoadConnection(channel: channel, host: "\(host):\(port)")
    }

    var isActive: Bool { channel.isActive }

    /// Sends one request and waits for its whole answer; after `timeout` the connection is closed
    /// and `TimedOut` thrown (the connection is then of no further use). Runs on the caller's
    /// isolation: called from the connection's own loop, nothing crosses threads.
    func send(
        method: HTTPMethod, path: String, headers extra: [(String, String)] = [], body: ByteBuffer? = nil,
        timeout: TimeAmount, isolation: isolated (any Actor)? = #isolation
    ) async throws -> LoadResponse {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
        head.headers.add(name: "Host", value: host)
        for (name, value) in extra { head.headers.add(name: name, value: value) }
        if let body {
            head.headers.add(name: "Content-Type", value: "application/json")
            head.headers.add(name: "Content-Length", value: String(body.readableBytes))
        }
        let promise = channel.eventLoop.makePromise(of: LoadResponse.self)
        let channel = self.channel
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(TimedOut())
            channel.close(promise: nil)
        }
        channel.writeAndFlush(ResponseCollector.Outgoing(head: head, body: body, promise: promise), promise: nil)
        defer { timer.cancel() }
        // Not `futureResult.get()`: that would resume on the global executor, one thread hop per answer.
        return try await withCheckedThrowingContinuation(isolation: isolation) { continuation in
            promise.futureResult.whenComplete { continuation.resume(with: $0) }
        }
    }

    func close() async {
        try? await channel.close()
    }
}

/// An actor whose executor is an event loop: a load worker isolated to it runs on its
/// connection's loop, so an answer resumes the worker on the thread that read it (as wrk does)
/// instead of waking a thread of the global executor for every request.
actor EventLoopIsolation {
    nonisolated let eventLoop: any EventLoop

    init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    nonisolated var unownedExecutor: UnownedSerialExecutor {
        eventLoop.executor.asUnownedSerialExecutor()
    }

    /// Waits until `instant` on the loop's own timer.
    func sleep(until instant: ContinuousClock.Instant) async {
        let delay = instant - .now
        guard delay > .zero else { return }
        await withCheckedContinuation { continuation in
            eventLoop.scheduleTask(in: TimeAmount(delay)) { continuation.resume() }
        }
    }
}

/// Writes each request and completes its promise with the answer; fails what is pending when the
/// connection goes away.
private final class ResponseCollector: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = Outgoing
    typealias OutboundOut = HTTPClientRequestPart

    struct Outgoing: Sendable {
        var head: HTTPRequestHead
        var body: ByteBuffer?
        var promise: EventLoopPromise<LoadResponse>
    }

    private var pending: [EventLoopPromise<LoadResponse>] = []
    private var status = 0
    private var replayed = false
    private var location: String?
    private var body: ByteBuffer?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let outgoing = unwrapOutboundIn(data)
        pending.append(outgoing.promise)
        context.write(wrapOutboundOut(.head(outgoing.head)), promise: nil)
        if let body = outgoing.body { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        context.write(wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
            replayed = head.headers.first(name: "Idempotent-Replayed") == "true"
            location = head.headers.first(name: "Location")
            body = nil
        case .body(var part):
            if body == nil { body = part } else { body!.writeBuffer(&part) }
        case .end:
            guard !pending.isEmpty else { return }
            pending.removeFirst().succeed(
                LoadResponse(status: status, replayed: replayed, location: location, body: body ?? ByteBuffer()))
            body = nil
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
        let waiting = pending
        pending.removeAll()
        for promise in waiting { promise.fail(error) }
    }
}
