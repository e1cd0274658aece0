import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// An HTTP/1.1 server on a loopback port that plays a script, one step per request, in the order
/// requests arrive on any of its connections: an answer (raw bytes, written as given), silence, or
/// the connection closed under the request. Records each request whole (head and body). Past the
/// script's end it stays silent.
public final class ScriptedServer: Sendable {
    public enum Step: Sendable {
        case answer(String)
        case silence
        case close
    }

    public let port: Int
    private let box: StateBox

    public var requests: [String] { box.state.withLock { $0.requests } }

    private init(channel: any Channel, box: StateBox) {
        self.port = channel.localAddress!.port!
        self.box = box
    }

    public static func with(_ steps: [Step], _ body: (ScriptedServer) async throws -> Void) async throws {
        let box = StateBox(steps)
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Player(box: box))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let server = ScriptedServer(channel: channel, box: box)
        do {
            try await body(server)
        } catch {
            try? await channel.close()
            throw error
        }
        try await channel.close()
    }

    /// Shares the script between the listening channel's children.
    final class StateBox: Sendable {
        let state: Mutex<(steps: [Step], requests: [String])>
        init(_ steps: [Step]) { state = Mutex((steps, [])) }
    }

    private final class Player: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let box: StateBox
        var received = ""

        init(box: StateBox) { self.box = box }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received += String(buffer: unwrapInboundIn(data))
            while let request = takeRequest() {
                let step = box.state.withLock { state -> Step in
                    state.requests.append(request)
                    return state.steps.isEmpty ? .silence : state.steps.removeFirst()
                }
                switch step {
                case .answer(let bytes):
                    context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: bytes)), promise: nil)
                case .silence:
                    break
                case .close:
                    context.close(promise: nil)
                    return
                }
            }
        }

        /// The first whole request in what was received, removed from it.
        private func takeRequest() -> String? {
            guard let end = received.range(of: "\r\n\r\n") else { return nil }
            let head = received[..<end.upperBound]
            let length =
                head.split(separator: "\r\n")
                .first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
            guard received[end.upperBound...].utf8.count >= length else { return nil }
            let bodyEnd = received.utf8.index(end.upperBound, offsetBy: length)
            let request = String(received[..<bodyEnd])
            received = String(received[bodyEnd...])
            return request
        }
    }
}
