import CrestTestSupport
import Foundation
import Testing

/// schemathesis (PyPI) fuzzes `crest serve` from docs/openapi.yaml, as an operator (the admin
/// token on every request): generated valid and invalid input for every operation, within a
/// bounded budget. No answer may be a 5xx, and every answer must be one the document describes —
/// status code, content type, headers and body schema.
@Suite("Fuzzing the API from its OpenAPI document")
struct FuzzTests {
    /// On the `PATH`, or where pip puts it (`.ci/run` installs it with pip).
    static let schemathesis =
        ((ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        + ["/usr/local/bin", "/root/.pyenv/shims", "/root/.local/bin"])
        .map { $0 + "/schemathesis" }
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    /// schemathesis is on the machine (`.ci/run` installs it with pip); outside CI a machine
    /// without it skips, in CI the test runs and fails.
    static var available: Bool { schemathesis != nil || ProcessInfo.processInfo.environment["CI"] != nil }

    static let checks = [
        "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_headers_conformance",
        "response_schema_conformance",
    ]

    @Test(
        "no 5xx and every answer as the document says, over a bounded budget of generated requests",
        .enabled(if: available, "schemathesis is not installed (pip install schemathesis)"))
    func fuzz() async throws {
        let schemathesis = try #require(Self.schemathesis, "schemathesis is not installed (pip install schemathesis)")
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-fuzz-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // Buyers named in the body (no passes to forge), so generated orders reach the order rules;
        // the buyer rate limit off (the others are off by default): generated requests come fast,
        // from one address; a provider webhook secret, so webhooks reach their signature check.
        let crest = try await CrestProcess(
            dataDirectory: directory.appending(path: "data"),
            extraArguments: [
                "--buyer-auth", "off", "--buyer-rate", "0", "--provider-webhook-secret", "fuzz-webhook-secret-0123456789",
            ])
        let document = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appending(path: "docs/openapi.yaml").path
        let output = Locked(Data())
        let run = ChildProcess(
            executable: schemathesis,
            arguments: [
                "run", document, "--url", "http://127.0.0.1:\(crest.port)",
                "--header", "Authorization: Bearer \(CrestProcess.adminToken)",
                "--checks", Self.checks.joined(separator: ","),
                "--phases", "examples,coverage,fuzzing", "--max-examples", "15", "--max-time", "90",
                "--seed", "20261204", "--workers", "1", "--request-timeout", "20", "--no-color",
                "--suppress-health-check", "all",
            ],
            currentDirectory: directory.path,
            output: .collect { chunk in output.withLock { $0.append(chunk) } })
        try run.run()
        await offPool { run.waitUntilExit() }
        let text = String(decoding: output.value, as: UTF8.self)
        #expect(run.terminationStatus == 0, "\(text.suffix(12_000))")
        // schemathesis' summary (operations, phases, checks and their counts), for the record.
        if let summary = text.range(of: "SUMMARY") { print(text[summary.lowerBound...].suffix(3_000)) }
        _ = await crest.stop()
    }
}
