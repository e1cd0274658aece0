import Foundation
import Hummingbird

/// The request context of every Crest route: JSON with RFC 3339 timestamps and a 64 KiB body cap.
public struct CrestRequestContext: RequestContext {
    /// Largest request body accepted; larger ones get 413.
    public static let maxBodySize = 64 * 1024

    public var coreContext: CoreRequestContextStorage

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }

    public var maxUploadSize: Int { Self.maxBodySize }

    public var requestDecoder: JSONDecoder { CrestJSON.sharedDecoder }

    public var responseEncoder: JSONEncoder { CrestJSON.sharedEncoder }
}
