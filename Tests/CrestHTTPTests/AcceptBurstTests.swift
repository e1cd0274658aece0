import AsyncHTTPClient
import CrestHTTP
import CrestTestSupport
import Foundation
import Glibc
import Hummingbird
import HummingbirdCore
import HummingbirdTesting
import NIOCore
import NIOHTTPTypes
import NIOPosix
import Testing

/// A crowd that opens its connections while the listener's event loop is busy with earlier ones:
/// each turn of the loop serves every ready connection and then reads the listening socket once.
/// With NIO's 4 connections per read, the last of 300 newcomers was answered after 24–31 turns;
/// with `CrestHTTPServer.acceptBurst`, about 5.
@Suite("A listener accepts a crowd in bursts")
struct AcceptBurstTests {
    /// Spins `cost` on the event loop for each request to `/busy`, as a crowd's answers cost the loop.
    final class BusyLoop: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = HTTPRequestPart
        typealias InboundOut = HTTPRequestPart
        let cost: Duration

        init(cost: Duration) { self.cost = cost }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if case .head(let head) = unwrapInboundIn(data), head.path == "/busy" {
                let end = ContinuousClock.now + cost
                while ContinuousClock.now < end {}
            }
            context.fireChannelRead(data)
        }
    }

    @Test("300 connections opened at once while 40 keep one event loop busy get their first answers within a few of its turns")
    func crowdAcceptedInBursts() async throws {
        let loop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let router = Router()
        router.get("ping") { _, _ in "ok" }
        router.get("busy") { _, _ in "ok" }
        let port = Locked(0)
        let app = Application(
            router: router,
            server: .http1(configuration: .init(additionalChannelHandlers: [BusyLoop(cost: .milliseconds(1))])),
            configuration: .init(address: .hostname("127.0.0.1", port: 0), backlog: 1_024),
            onServerRunning: CrestHTTPServer.whenListening { channel in
                port.withLock { $0 = channel.localAddress?.port ?? 0 }
            },
            eventLoopGroupProvider: .shared(loop))
        let http = HTTPClient(
            eventLoopGroupProvider: .shared(MultiThreadedEventLoopGroup.singleton),
            configuration: .init(
                timeout: .init(connect: .seconds(30), read: .seconds(30)),
                connectionPool: .init(idleTimeout: HTTPClient.crestIdleTimeout, concurrentHTTP1ConnectionsPerHostSoftLimit: 400)))
        let busyCount = 40
        let newcomerCount = 300

        let (turn, newcomers) = try await http.closing { http in
            try await app.test(.live) { client in
                let url = "http://127.0.0.1:\(try #require(client.port))/busy"
                #expect(port.value == client.port)
                let stop = Locked(false)
                let served = Locked(0)
                return try await withThrowingTaskGroup(of: Void.self) { group in
                    // The busy ones: each sends its next request as soon as the last is answered.
                    for _ in 0..<busyCount {
                        group.addTask {
                            while !stop.value {
                                _ = try await http.execute(HTTPClientRequest(url: url), timeout: .seconds(30))
                                served.withLock { $0 += 1 }
                            }
                        }
                    }
                    // One turn of the loop, as the busy ones see it: their round trip.
                    try await Task.sleep(for: .milliseconds(500))
                    let before = (served.value, ContinuousClock.now)
                    try await Task.sleep(for: .milliseconds(1_000))
                    let after = (served.value, ContinuousClock.now)
                    let turn = (after.1 - before.1) / Double(max(1, after.0 - before.0)) * Double(busyCount)

                    // The newcomers, at once: their handshakes done by the kernel, their requests sent,
                    // all waiting to be accepted.
                    let newcomers = try await Self.openAtOnce(newcomerCount, port: try #require(client.port))
                    stop.withLock { $0 = true }
                    try await group.waitForAll()
                    return (turn, newcomers)
                }
            }
        }
        try await loop.shutdownGracefully()

        let answered = newcomers.compactMap { $0 }
        #expect(answered.count == newcomerCount, "\(newcomerCount - answered.count) newcomers not answered")
        let slowest = try #require(answered.max())
        // Accepted 4 per read, the last newcomer waited 24–31 turns (measured); accepted in bursts,
        // about 5.
        #expect(slowest < turn * 12, "slowest newcomer \(slowest), a turn of the loop \(turn)")
    }

    /// Opens `count` connections to `port` at once (blocking sockets, off the pool), sends a
    /// request on each, and returns how long each waited for the first byte of its answer (`nil`:
    /// none within 30 s).
    static func openAtOnce(_ count: Int, port: Int) async throws -> [Duration?] {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try Self.openAtOnceBlocking(count, port: port) })
            }
        }
    }

    private static func openAtOnceBlocking(_ count: Int, port: Int) throws -> [Duration?] {
        struct SocketError: Error { var call: String }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let request = Array("GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        var sockets: [Int32] = []
        defer { for socket in sockets { close(socket) } }
        let start = ContinuousClock.now
        for _ in 0..<count {
            let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard socket >= 0 else { throw SocketError(call: "socket") }
            sockets.append(socket)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard connected == 0 else { throw SocketError(call: "connect") }
            guard send(socket, request, request.count, 0) == request.count else { throw SocketError(call: "send") }
        }
        var waited = [Duration?](repeating: nil, count: count)
        var polled = sockets.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        var left = count
        while left > 0, ContinuousClock.now - start < .seconds(30) {
            guard poll(&polled, nfds_t(polled.count), 100) >= 0 else { throw SocketError(call: "poll") }
            let now = ContinuousClock.now
            for index in polled.indices where polled[index].revents != 0 && waited[index] == nil {
                waited[index] = now - start
                polled[index].fd = -1  // answered: poll skips it from now on
                left -= 1
            }
        }
        return waited
    }
}
