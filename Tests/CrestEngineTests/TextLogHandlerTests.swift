import CrestEngine
import CrestTestSupport
import Logging
import Synchronization
import Testing

@Suite("Text log lines")
struct TextLogHandlerTests {
    /// Lines kept in memory.
    struct Lines: TextOutputStream, Sendable {
        let kept = Locked<[String]>([])
        mutating func write(_ string: String) { kept.withLock { $0.append(string) } }
    }

    /// A metadata value that counts how often it is turned into text.
    final class Rendered: CustomStringConvertible, Sendable {
        private let count = Mutex(0)
        var times: Int { count.withLock { $0 } }
        var description: String {
            count.withLock { $0 += 1 }
            return "req-7"
        }
    }

    @Test("the logger's metadata is turned into text only when a line is written, and then joins the line's own")
    func lazyMetadata() throws {
        let lines = Lines()
        var logger = Logger(label: "crest.test") { label in
            var handler = TextLogHandler(label: label, stream: lines, metadataProvider: nil)
            handler.logLevel = .info
            return handler
        }
        let rendered = Rendered()
        for _ in 0..<3 { logger[metadataKey: "request"] = .stringConvertible(rendered) }
        logger[metadataKey: "node"] = "n1"
        logger.debug("below the level")
        #expect(rendered.times == 0, "metadata rendered \(rendered.times) times with no line written")
        #expect(lines.kept.value.isEmpty)
        logger.info("order placed", metadata: ["node": "n2", "order": "0193-a"])
        let line = try #require(lines.kept.value.first)
        #expect(rendered.times == 1)
        #expect(line.contains(" info crest.test: node=n2 order=0193-a request=req-7 [CrestEngineTests] order placed\n"), "\(line)")
    }
}
