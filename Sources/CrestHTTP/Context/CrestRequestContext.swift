import Foundation
import Hummingbird
import NIOCore

/// The request context of every Crest route: JSON with RFC 3339 timestamps and a 64 KiB body cap.
package struct CrestRequestContext: RequestContext {
    /// Largest request body accepted; larger ones get 413.
    package static let maxBodySize = 64 * 1024

    package var coreContext: CoreRequestContextStorage
    /// The connection's peer (`nil` in router tests, which have no socket).
    package let peer: SocketAddress?

    package init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        peer = source.channel.remoteAddress
    }

    package var maxUploadSize: Int { Self.maxBodySize }

    package var requestDecoder: JSONDecoder { CrestJSON.sharedDecoder }

    package var responseEncoder: JSONEncoder { CrestJSON.sharedEncoder }
}
