import Foundation

/// The `crest` executable that `swift test` builds next to the test bundle, run as a child process.
public enum CrestCommand {
    public static var executable: URL {
        URL(filePath: CommandLine.arguments[0]).deletingLastPathComponent().appending(path: "crest")
    }

    /// `crest arguments`, not started yet, and everything it will print (standard output and error,
    /// interleaved), collected as it comes.
    public static func process(_ arguments: [String]) -> (Process, Locked<String>) {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let output = Locked("")
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            guard !data.isEmpty else {
                handle.readabilityHandler = nil
                return
            }
            output.withLock { $0 += String(decoding: data, as: UTF8.self) }
        }
        return (process, output)
    }

    /// Runs `crest arguments` to its end and returns its exit status and everything it printed
    /// (standard output and error, interleaved). After `timeout` it is killed and the status is nil.
    public static func run(_ arguments: [String], timeout: Duration) async throws -> (status: Int32?, output: String) {
        let (process, output) = process(arguments)
        try process.run()
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            guard ContinuousClock.now < deadline else {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                return (nil, output.value)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        process.waitUntilExit()
        try await Task.sleep(for: .milliseconds(200))  // the last bytes still in the pipe
        return (process.terminationStatus, output.value)
    }
}
