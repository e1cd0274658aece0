import CrestCore
import Foundation
import Logging

/// Log lines as JSON objects, one per line (`crest serve --log-format json`), for a log shipper:
/// `time` (RFC 3339, UTC, milliseconds), `level`, `logger` (the label), `message`, `source` (the
/// module), then the metadata — the task's (e.g. `trace_id` and `span_id` from the tracing
/// metadata provider), the logger's and the call's, later ones winning, each under its own key
/// (one that collides with the fields above is written as `meta_<key>`). Strings stay strings;
/// lists and dictionaries of metadata become JSON arrays and objects.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let write: @Sendable (String) -> Void

    static let reserved: Set<String> = ["time", "level", "logger", "message", "source"]

    /// Lines to standard error, each written whole with one call.
    public static func standardError(label: String, metadataProvider: Logger.MetadataProvider?) -> JSONLogHandler {
        JSONLogHandler(label: label, metadataProvider: metadataProvider) { line in
            FileHandle.standardError.write(Data(line.utf8))
        }
    }

    /// `write` receives each line with its newline.
    public init(label: String, metadataProvider: Logger.MetadataProvider?, write: @escaping @Sendable (String) -> Void) {
        self.label = label
        self.metadataProvider = metadataProvider
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadataProvider?.get() ?? [:]
        merged.merge(metadata) { $1 }
        if let explicit = event.metadata { merged.merge(explicit) { $1 } }
        if let error = event.error { merged["error"] = "\(error)" }
        let (level, message, source) = (event.level, event.message, event.source)
        var text = "{\"time\":\"\(Date().rfc3339Milliseconds)\",\"level\":\"\(level.rawValue)\",\"logger\":"
        Self.appendString(label, to: &text)
        text += ",\"message\":"
        Self.appendString(message.description, to: &text)
        text += ",\"source\":"
        Self.appendString(source, to: &text)
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            text += ","
            Self.appendString(Self.reserved.contains(key) ? "meta_\(key)" : key, to: &text)
            text += ":"
            Self.append(value, to: &text)
        }
        text += "}\n"
        write(text)
    }

    static func append(_ value: Logger.Metadata.Value, to text: inout String) {
        switch value {
        case .string(let string): appendString(string, to: &text)
        case .stringConvertible(let convertible): appendString(convertible.description, to: &text)
        case .array(let values):
            text += "["
            for (index, value) in values.enumerated() {
                if index > 0 { text += "," }
                append(value, to: &text)
            }
            text += "]"
        case .dictionary(let dictionary):
            text += "{"
            for (index, (key, value)) in dictionary.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { text += "," }
                appendString(key, to: &text)
                text += ":"
                append(value, to: &text)
            }
            text += "}"
        }
    }

    /// A JSON string: quotes, backslashes and control characters escaped (RFC 8259).
    static func appendString(_ string: String, to text: inout String) {
        text += "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case _ where scalar.value < 0x20:
                text +=
                    "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                    + String(scalar.value, radix: 16)
            default: text.unicodeScalars.append(scalar)
            }
        }
        text += "\""
    }
}
