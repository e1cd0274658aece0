import Logging

/// Log lines as text, exactly as swift-log's `StreamLogHandler` writes them to standard error,
/// with the logger's own metadata kept as it is until a line is written.
///
/// `StreamLogHandler` renders its metadata to text each time a key is set, line or no line; the
/// HTTP server and client set a request id on the logger of every request, so at the `error`
/// level a server rendered metadata for nothing on every request (0.56% of `crest demo`'s CPU).
/// Here the logger's metadata joins each line's own when a line is written.
public struct TextLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    private var base: StreamLogHandler

    public var logLevel: Logger.Level {
        get { base.logLevel }
        set { base.logLevel = newValue }
    }

    public var metadataProvider: Logger.MetadataProvider? {
        get { base.metadataProvider }
        set { base.metadataProvider = newValue }
    }

    /// Lines to standard error.
    public static func standardError(label: String, metadataProvider: Logger.MetadataProvider?) -> TextLogHandler {
        TextLogHandler(base: .standardError(label: label, metadataProvider: metadataProvider))
    }

    /// Lines to `stream`.
    public init(label: String, stream: any TextOutputStream & Sendable, metadataProvider: Logger.MetadataProvider?) {
        self.init(base: StreamLogHandler(label: label, stream: stream, metadataProvider: metadataProvider))
    }

    private init(base: StreamLogHandler) { self.base = base }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var event = event
        if !metadata.isEmpty {
            // The line's own metadata wins over the logger's, as it does in StreamLogHandler.
            event.metadata = metadata.merging(event.metadata ?? [:]) { $1 }
        }
        base.log(event: event)
    }
}
