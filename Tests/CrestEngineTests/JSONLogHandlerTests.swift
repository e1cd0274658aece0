import CrestEngine
import CrestTestSupport
import Foundation
import Logging
import Testing

@Suite("JSON log lines")
struct JSONLogHandlerTests {
    /// A logger whose lines are kept, with a metadata provider standing in for the tracing one.
    static func logger(provided: Logger.Metadata = [:]) -> (Logger, Locked<[String]>) {
        let lines = Locked<[String]>([])
        let provider = Logger.MetadataProvider { provided }
        let logger = Logger(label: "crest.test") { label in
            var handler = JSONLogHandler(label: label, metadataProvider: provider) { line in lines.withLock { $0.append(line) } }
            handler.logLevel = .debug
            return handler
        }
        return (logger, lines)
    }

    static func object(_ line: String) throws -> [String: Any] {
        #expect(line.hasSuffix("\n") && line.dropLast().firstIndex(of: "\n") == nil, "one line: \(line)")
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    @Test("a line is one JSON object: time, level, logger, message, source, then every metadata key")
    func fields() throws {
        let (base, lines) = Self.logger(provided: ["trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"])
        var logger = base
        logger[metadataKey: "node"] = "n1"
        logger.notice("order placed", metadata: ["order": "0193-a", "sale": .stringConvertible(42)])
        let line = try Self.object(try #require(lines.value.first))
        #expect(line["level"] as? String == "notice" && line["logger"] as? String == "crest.test")
        #expect(line["message"] as? String == "order placed")
        #expect(line["source"] as? String == "CrestEngineTests")
        #expect((line["time"] as? String).flatMap { try? Date($0, strategy: .iso8601) } != nil, "\(line)")
        #expect(line["trace_id"] as? String == "4bf92f3577b34da6a3ce929d0e0e4736" && line["span_id"] as? String == "00f067aa0ba902b7")
        #expect(line["node"] as? String == "n1" && line["order"] as? String == "0193-a" && line["sale"] as? String == "42")
        logger.debug("below the level is still written at debug")
        logger.trace("below the level")
        #expect(lines.value.count == 2)
    }

    @Test("strings are escaped: quotes, backslashes, newlines and control characters stay inside one line")
    func escaping() throws {
        let (logger, lines) = Self.logger()
        let nasty = "a \"quoted\" \\ path\nsecond line\r\t\u{1}\u{1F} ✓ 猫"
        logger.error("\(nasty)", metadata: ["detail": .string(nasty)])
        let line = try Self.object(try #require(lines.value.first))
        #expect(line["message"] as? String == nasty && line["detail"] as? String == nasty)
    }

    @Test("lists and dictionaries become JSON arrays and objects; a key that collides with a field is meta_<key>")
    func structure() throws {
        let (logger, lines) = Self.logger()
        logger.info(
            "shaped", metadata: ["ids": ["a", "b"], "counts": ["x": "1", "y": ["z"]], "message": "mine", "level": "also mine"])
        let line = try Self.object(try #require(lines.value.first))
        #expect(line["ids"] as? [String] == ["a", "b"])
        let counts = try #require(line["counts"] as? [String: Any])
        #expect(counts["x"] as? String == "1" && counts["y"] as? [String] == ["z"])
        #expect(line["message"] as? String == "shaped" && line["meta_message"] as? String == "mine")
        #expect(line["level"] as? String == "info" && line["meta_level"] as? String == "also mine")
    }
}
