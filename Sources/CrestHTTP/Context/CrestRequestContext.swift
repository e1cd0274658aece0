import Foundation
import Hummingbird

/// The request context of every Crest route: JSON with RFC 3339 timestamps and a 64 KiB body cap.
package struct CrestRequestContext: RequestContext {
    /// Largest request body accepted; larger ones get 413.
    package static let maxBodySize = 64 * 1024

    package var coreContext: CoreRequestContextStorage

    package init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }

    package var maxUploadSize: Int { Self.maxBodySize }

    package var requestDecoder: JSONDecoder { CrestJSON.sharedDecoder }

    package var responseEncoder: JSONEncoder { CrestJSON.sharedEncoder }
}
