import Metrics
import NIOCore
import NIOHTTPTypes
import Synchronization

/// What one client may hold of the server: connections and the time to send a request.
package struct ConnectionLimits: Sendable, Hashable {
    /// Connections open at once; a connection past it is closed as soon as it is accepted.
    package var maxConnections = 10_000
    /// Time from a connection's opening to its first request's whole head (request line and headers).
    package var headerTimeout: Duration = .seconds(10)
    /// Time from a request's head to the end of its body.
    package var bodyTimeout: Duration = .seconds(30)
    /// Time a kept-alive connection may wait for its next request.
    package var idleTimeout: Duration = .seconds(60)

    package init() {}
}

/// The connections open now, shared by every connection's `ConnectionGuard`.
package final class OpenConnections: Sendable {
    private let count = Atomic<Int>(0)
    private let gauge = Gauge(label: "crest_connections_open")

    package init() {}

    package var current: Int { count.load(ordering: .relaxed) }

    /// Counts one more connection; its number, counting it.
    fileprivate func open() -> Int {
        let now = count.wrappingAdd(1, ordering: .relaxed).newValue
        gauge.record(now)
        return now
    }

    fileprivate func close() {
        gauge.record(count.wrappingSubtract(1, ordering: .relaxed).newValue)
    }
}

/// Closes connections past the cap, and those whose client takes too long to send a request's
/// head or body (a slow client holds a connection and its buffers: a few thousand of them, each
/// sending a byte every few seconds, would hold the server). Idle kept-alive connections are
/// Hummingbird's `idleTimeout`.
final class ConnectionGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private static let closed: [String: Counter] = Dictionary(
        uniqueKeysWithValues: ["over_cap", "header_timeout", "body_timeout"].map {
            ($0, Counter(label: "crest_connections_closed_total", dimensions: [("reason", $0)]))
        })

    private let limits: ConnectionLimits
    private let connections: OpenConnections
    private var counted = false
    private var timer: Scheduled<Void>?

    init(limits: ConnectionLimits, connections: OpenConnections) {
        self.limits = limits
        self.connections = connections
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { opened(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        opened(context)
        context.fireChannelActive()
    }

    private func opened(_ context: ChannelHandlerContext) {
        guard !counted else { return }
        counted = true
        if connections.open() > limits.maxConnections {
            Self.closed["over_cap"]?.increment()
            context.close(promise: nil)
            return
        }
        arm(context, limits.headerTimeout, reason: "header_timeout")
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: arm(context, limits.bodyTimeout, reason: "body_timeout")
        case .end: disarm()
        case .body: break
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        left()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        left()
    }

    private func left() {
        disarm()
        if counted {
            counted = false
            connections.close()
        }
    }

    private func arm(_ context: ChannelHandlerContext, _ timeout: Duration, reason: String) {
        disarm()
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) {
            Self.closed[reason]?.increment()
            context.close(promise: nil)
        }
    }

    private func disarm() {
        timer?.cancel()
        timer = nil
    }
}
