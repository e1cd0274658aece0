import Foundation
import Glibc
import Testing

/// The `crest` executable that `swift test` builds next to the test bundle, run as a child process.
public enum CrestCommand {
    public static var executable: URL {
        URL(filePath: CommandLine.arguments[0]).deletingLastPathComponent().appending(path: "crest")
    }

    /// `crest arguments`, not started yet, and everything it will print (standard output and error,
    /// interleaved), collected as it comes. `environment` is added to this process's own.
    public static func process(_ arguments: [String], environment: [String: String] = [:]) -> (
        ChildProcess, Locked<String>
    ) {
        let output = Locked("")
        // The first bytes of a character whose rest has not been read yet.
        let pending = Locked<[UInt8]>([])
        let process = ChildProcess(
            executable: executable.path, arguments: arguments,
            environment: environment.isEmpty
                ? nil : ProcessInfo.processInfo.environment.merging(environment) { _, given in given },
            output: .collect { data in
                let text = pending.withLock { pending -> String in
                    pending += data
                    let complete = data.isEmpty ? pending.count : completePrefixLength(pending)
                    defer { pending.removeFirst(complete) }
                    return String(decoding: pending[..<complete], as: UTF8.self)
                }
                output.withLock { $0 += text }
            })
        return (process, output)
    }

    /// How many leading bytes of `bytes` end on a character boundary: a multi-byte UTF-8 sequence
    /// cut off at the end is left out, its rest comes with the next read (decoding each read on its
    /// own turned a "…" split across two reads into three replacement characters).
    public static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        var lead = bytes.count - 1
        while lead >= 0, bytes.count - lead <= 3, bytes[lead] & 0xC0 == 0x80 { lead -= 1 }
        guard lead >= 0 else { return bytes.count }
        let byte = bytes[lead]
        let length = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 1
        return bytes.count - lead < length ? lead : bytes.count
    }

    /// Starts `process` (see `ChildProcess` for why not Foundation's `Process`).
    public static func launch(_ process: ChildProcess) throws {
        try process.run()
    }

    /// A started `crest` that ended, or did not print its listening line in time.
    public struct NotListening: Error, CustomStringConvertible {
        public var output: String
        public var description: String { "crest did not start:\n\(output)" }
    }

    /// Waits until `output` holds `<prefix> http://127.0.0.1:<port>` and returns the port. Throws
    /// `NotListening` (after terminating `process`) if it ends first or `timeout` passes.
    public static func waitUntilListening(
        _ process: ChildProcess, output: Locked<String>, prefix: String, timeout: Duration = .seconds(60)
    ) async throws -> Int {
        let deadline = ContinuousClock.now + timeout
        let listening = try Regex(prefix + #" http://127\.0\.0\.1:(\d+)"#)
        while true {
            let text = output.value
            if let match = text.firstMatch(of: listening), let port = Int(match.output[1].substring ?? "") {
                return port
            }
            guard process.isRunning, ContinuousClock.now < deadline else {
                process.terminate()
                throw NotListening(output: text)
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// SIGKILL: no shutdown, no flush — what a crash or `kill -9` does. Returns once it is gone.
    public static func kill(_ process: ChildProcess) async {
        Glibc.kill(process.processIdentifier, SIGKILL)
        await offPool { process.waitUntilExit() }
    }

    /// SIGTERM, then waits for the graceful shutdown (off the concurrency pool: it can take
    /// seconds); returns the exit status. A shutdown that does not end within `grace` is a bug of
    /// Crest's, not a reason to hang the suite: it is recorded as an issue (with `log`, the
    /// process's output, if given), the process is killed, and SIGKILL's status returned.
    public static func stop(
        _ process: ChildProcess, grace: Duration = .seconds(90), log: (@Sendable () -> String)? = nil
    ) async -> Int32 {
        process.terminate()
        let ended = await offPool { process.waitUntilExit(within: grace) }
        if !ended {
            let output = log.map { "; its output ends:\n" + String($0().suffix(6_000)) } ?? ""
            Issue.record("crest did not stop within \(grace) of SIGTERM\(output)")
            await kill(process)
        }
        return process.terminationStatus
    }

    /// Runs `crest arguments` to its end and returns its exit status and everything it printed
    /// (standard output and error, interleaved). After `timeout` it is killed and the status is nil.
    public static func run(_ arguments: [String], environment: [String: String] = [:], timeout: Duration) async throws
        -> (status: Int32?, output: String)
    {
        let (process, output) = process(arguments, environment: environment)
        try launch(process)
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            guard ContinuousClock.now < deadline else {
                await kill(process)
                return (nil, output.value)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        process.waitUntilExit()
        try await Task.sleep(for: .milliseconds(200))  // the last bytes still in the pipe
        return (process.terminationStatus, output.value)
    }
}
