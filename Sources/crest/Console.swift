import ArgumentParser
import CrestEngine
import Foundation
import Logging

/// Lines for the operator on standard output, written at once (not buffered), so that a
/// supervisor or a test reading the pipe sees them when they happen.
enum Console {
    static func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// A line on standard error: what went wrong, kept apart from the output a script reads.
    static func complain(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

extension Console {
    /// Logs go to standard error at `level` (trace … critical), as text or JSON lines
    /// (`JSONLogHandler`); once per process. A metadata provider adds to every line what the task
    /// knows, e.g. the current span's trace and span ids.
    static func bootstrapLogging(
        level name: String, format: String = "text", metadataProvider: Logger.MetadataProvider? = nil
    ) throws {
        guard let level = Logger.Level(rawValue: name) else { throw ValidationError("unknown log level \(name)") }
        guard format == "text" || format == "json" else { throw ValidationError("unknown log format \(format): text or json") }
        let json = format == "json"
        LoggingSystem.bootstrap(
            { label, provider in
                var handler: any LogHandler =
                    json
                    ? JSONLogHandler.standardError(label: label, metadataProvider: provider)
                    : TextLogHandler.standardError(label: label, metadataProvider: provider)
                handler.logLevel = level
                return handler
            }, metadataProvider: metadataProvider)
    }
}
