import AsyncHTTPClient
import Foundation
import NIOCore

/// What Crest's outbound HTTP/1.1 clients share — the payment provider's, the merchant webhooks'
/// and `crest loadtest`'s: how long they keep an idle connection, and which failures were a
/// connection lost under a request.
///
/// A kept-alive connection races the server's idle timeout: a request the pool hands to a
/// connection the server is closing at that moment gets no answer (`remoteConnectionClosed`, a
/// reset). The clients drop an idle connection before common servers close it, and send a request
/// whose connection was lost once more on another — only where sending it twice changes nothing: a
/// `GET`, a `POST` with an `Idempotency-Key`, an event its receiver tells apart by its id.
package enum OutboundHTTP {
    /// Below the idle timeouts of common servers (Node.js and Apache close an idle kept-alive
    /// connection after 5 s; Crest closes a new connection that sent no request after 10 s).
    package static let idleTimeout: TimeAmount = .seconds(4)

    /// Whether `error` says the connection closed under a request, which the server may not have
    /// read (not a deadline, nor a connection that could not be made).
    package static func lostConnection(_ error: any Error) -> Bool {
        switch error {
        case let error as HTTPClientError: error == .remoteConnectionClosed
        case let error as ChannelError: error == .ioOnClosedChannel || error == .eof
        case let error as IOError: error.errnoCode == ECONNRESET || error.errnoCode == EPIPE
        default: false
        }
    }

    /// `call`'s result, with `call` run once more when its connection was lost before an answer.
    /// For calls that may be sent twice (see the type's comment).
    package static func retryingLostConnection<T>(
        isolation: isolated (any Actor)? = #isolation, _ call: () async throws -> T
    ) async throws -> T {
        do {
            return try await call()
        } catch  where lostConnection(error) {
            return try await call()
        }
    }
}
