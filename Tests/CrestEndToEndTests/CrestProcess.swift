import CrestTestSupport
import Foundation
import Testing

/// `crest serve` as a child process on a loopback port it picks itself, for tests that need a
/// real process: to kill it with SIGKILL, to restart it on the same data directory.
final class CrestProcess: Sendable {
    static let adminToken = "e2e-admin-token"
    /// Every process started here verifies buyer passes signed with it (`CREST_BUYER_PASS_SECRETS`).
    static let buyerPassSecret = "e2e-buyer-pass-secret-0123456789abcdef"

    let process: ChildProcess
    let port: Int
    private let output: Locked<String>

    static var executable: URL { CrestCommand.executable }

    /// Starts `crest serve --port 0` on `dataDirectory` and waits until it listens.
    convenience init(dataDirectory: URL, extraArguments: [String] = [], environment: [String: String] = [:]) async throws {
        try await self.init(
            arguments: [
                "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", dataDirectory.path,
                "--admin-token", Self.adminToken, "--log-level", "warning",
            ] + extraArguments,
            listening: "crest listening on", environment: environment)
    }

    /// Starts `crest` with `arguments` (and `environment` added to this process's own) and waits for
    /// the line `<listening> http://127.0.0.1:<port>`.
    init(arguments: [String], listening prefix: String, environment: [String: String] = [:]) async throws {
        let executable = Self.executable
        #expect(FileManager.default.isExecutableFile(atPath: executable.path), "build crest first: \(executable.path)")
        // No shedding by lag: the whole suite on two cores lags past any threshold, and a test that
        // reads an order must not be told 503 shed for it. Shedding has its own tests (OverloadTests).
        let defaults = ["CREST_BUYER_PASS_SECRETS": Self.buyerPassSecret, "CREST_SHED_LAG_MS": "0"]
        let (process, output) = CrestCommand.process(arguments, environment: defaults.merging(environment) { $1 })
        self.output = output
        try CrestCommand.launch(process)
        self.process = process
        port = try await CrestCommand.waitUntilListening(process, output: output, prefix: prefix)
    }

    var log: String { output.value }

    /// SIGKILL: no shutdown, no flush — what a crash or `kill -9` does. Returns once it is gone.
    func kill() async { await CrestCommand.kill(process) }

    /// SIGTERM, then waits for the graceful shutdown; returns the exit status.
    func stop() async -> Int32 { await CrestCommand.stop(process, log: { [output] in output.value }) }

    /// SIGTERM, and a clean exit expected: its output is the failure's message.
    func expectGracefulStop(sourceLocation: SourceLocation = #_sourceLocation) async {
        let status = await stop()
        #expect(status == 0, "graceful stop failed (exit status \(status)):\n\(log)", sourceLocation: sourceLocation)
    }

    deinit {
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
    }

}
