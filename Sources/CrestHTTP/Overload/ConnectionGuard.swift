import Metrics
import NIOCore
import NIOHTTPTypes
import Synchronization

/// What one client may hold of the server: connections and the time to send a request.
package struct ConnectionLimits: Sendable, Hashable {
    /// Connections open at once; a connection past it is closed as soon as it is accepted.
    package var maxConnections = 10_000
    /// Connections the kernel completes and holds until the server accepts them (the listen
    /// backlog; the kernel caps it at `net.core.somaxconn`). A crowd opens thousands at once: past
    /// the backlog the kernel drops their handshakes, and each such client waits 1 s or more for
    /// its SYN to be sent again before its first request is even read.
    package var backlog = 4_096
    /// Connections one client address may hold open at once (0: no cap); one past it is closed as
    /// soon as it is accepted. A greedy client cannot take the whole `maxConnections` for itself.
    package var maxConnectionsPerAddress = 0
    /// Peers whose connections are not capped per address: proxies, each of whose connections may
    /// carry many clients (`--trusted-proxies`).
    package var uncappedPeers = ClientAddresses(trustedProxies: [])
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
    /// Per client address, kept only while a cap per address is on; an address leaves with its
    /// last connection, so this holds at most one entry per open connection.
    private let byAddress = Mutex<[String: Int]>([:])

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

    /// Counts one more connection of `address`; its number, counting it.
    fileprivate func open(address: String) -> Int {
        byAddress.withLock { counts in
            counts[address, default: 0] += 1
            return counts[address]!
        }
    }

    fileprivate func close(address: String) {
        byAddress.withLock { counts in
            let left = counts[address, default: 1] - 1
            counts[address] = left > 0 ? left : nil
        }
    }

    /// The connections of `address` counted against a cap per address now.
    package func counted(_ address: String) -> Int { byAddress.withLock { $0[address, default: 0] } }
}

/// Closes connections past the cap, and those whose client takes too long to send a request's
/// head or body (a slow client holds a connection and its buffers: a few thousand of them, each
/// sending a byte every few seconds, would hold the server). Idle kept-alive connections are
/// Hummingbird's `idleTimeout`.
///
/// Every request passes here, so a request costs two clock reads and no timer: one timer per
/// connection is scheduled when a deadline may fall and, when it fires, closes the connection or
/// moves to the deadline now in force (as Hummingbird's idle handler does).
final class ConnectionGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private static let closed: [String: Counter] = Dictionary(
        uniqueKeysWithValues: ["over_cap", "over_address_cap", "header_timeout", "body_timeout"].map {
            ($0, Counter(label: "crest_connections_closed_total", dimensions: [("reason", $0)]))
        })

    private enum Waiting {
        /// For the first request's head, since the connection opened.
        case head(since: NIODeadline)
        /// For the end of a request's body, since its head.
        case body(since: NIODeadline)
        /// For nothing this handler times (between requests: Hummingbird's idle timeout).
        case nothing
    }

    private let limits: ConnectionLimits
    private let connections: OpenConnections
    private var counted = false
    /// The peer's address, when counted against the cap per address.
    private var address: String?
    private var waiting = Waiting.nothing
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
        if limits.maxConnectionsPerAddress > 0, let peer = context.channel.remoteAddress?.ipAddress,
            !limits.uncappedPeers.isTrusted(peer)
        {
            address = peer
            if connections.open(address: peer) > limits.maxConnectionsPerAddress {
                Self.closed["over_address_cap"]?.increment()
                context.close(promise: nil)
                return
            }
        }
        waiting = .head(since: .now())
        schedule(context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            waiting = .body(since: .now())
            schedule(context)
        case .end: waiting = .nothing
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
        timer?.cancel()
        timer = nil
        waiting = .nothing
        if counted {
            counted = false
            connections.close()
        }
        if let address {
            self.address = nil
            connections.close(address: address)
        }
    }

    /// The deadline in force and what passing it means.
    private var deadline: (at: NIODeadline, reason: String)? {
        switch waiting {
        case .head(let since): (since + TimeAmount(limits.headerTimeout), "header_timeout")
        case .body(let since): (since + TimeAmount(limits.bodyTimeout), "body_timeout")
        case .nothing: nil
        }
    }

    /// Makes sure a timer will look at the deadline in force; a timer already scheduled will.
    private func schedule(_ context: ChannelHandlerContext) {
        guard timer == nil, let deadline else { return }
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline.at) { [self] in
            timer = nil
            guard let deadline = self.deadline else { return }
            if deadline.at <= .now() {
                Self.closed[deadline.reason]?.increment()
                context.close(promise: nil)
            } else {
                schedule(context)
            }
        }
    }
}
