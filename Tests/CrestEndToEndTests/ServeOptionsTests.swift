import CrestTestSupport
import Foundation
import Testing

/// `crest serve`'s options for the PostgreSQL store, refused before anything starts when out of range.
@Suite("crest serve: store options")
struct ServeOptionsTests {
    @Test("database pool options out of range: a clear message and a usage exit, before any connection is tried")
    func badDatabaseOptions() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-options-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        // Nothing listens on port 1: a connection attempt would fail differently.
        let base = [
            "serve", "--port", "0", "--data-dir", directory.path, "--admin-token", "t",
            "--database-url", "postgres://crest@127.0.0.1:1/crest",
        ]
        for (extra, message) in [
            (["--database-wait-ms", "0"], "database wait must be 1…60,000 ms"),
            (["--database-wait-ms", "60001"], "database wait must be 1…60,000 ms"),
            (["--database-connections", "0"], "database connections must be 1…1,000"),
            (["--database-connections", "1001"], "database connections must be 1…1,000"),
        ] {
            let (status, output) = try await CrestCommand.run(base + extra, timeout: .seconds(60))
            #expect(status == 64, "\(extra): \(output)")
            #expect(output.contains(message), "\(extra): \(output)")
            #expect(!output.contains("cannot open the PostgreSQL store"), "\(extra): \(output)")
        }
    }
}

@Suite("crest as a child process: its output")
struct CrestCommandOutputTests {
    @Test("a character split across two reads of the pipe is decoded whole")
    func splitCharacters() {
        for text in ["a…b", "é", "x😀", "plain"] {
            let bytes = Array(text.utf8)
            for cut in 0...bytes.count {
                let first = Array(bytes[..<cut])
                let complete = CrestCommand.completePrefixLength(first)
                let decoded = String(decoding: first[..<complete], as: UTF8.self)
                    + String(decoding: first[complete...] + bytes[cut...], as: UTF8.self)
                #expect(decoded == text, "\(text) cut at \(cut)")
                #expect(!decoded.contains("\u{FFFD}"))
            }
        }
    }
}
