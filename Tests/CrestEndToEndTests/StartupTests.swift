import CrestTestSupport
import Foundation
import Testing

/// What a supervisor (systemd, Kubernetes) relies on: a start-up that cannot complete says why in
/// one line and exits non-zero within seconds, and SIGTERM ends the process whatever state
/// start-up reached.
@Suite("crest start-up and stop")
struct StartupTests {
    @Test("crest serve on a port already in use exits non-zero within 5 s, naming the port")
    func serveOnBusyPort() async throws {
        let busy = try LoopbackSocket()
        let directory = temporaryDirectory("busy")
        defer { try? FileManager.default.removeItem(at: directory) }
        let started = ContinuousClock.now
        let (status, output) = try await CrestCommand.run(
            ["serve", "--host", "127.0.0.1", "--port", "\(busy.port)", "--data-dir", directory.path],
            timeout: .seconds(5))
        #expect(status != nil && status != 0, "still running or exited 0 after \(ContinuousClock.now - started): \(output)")
        #expect(output.contains("cannot listen on 127.0.0.1:\(busy.port): Address already in use"), "\(output)")
        #expect(output.contains("admin token (generated"), "the generated token is told before start-up fails: \(output)")
    }

    @Test("crest psp-sim on a port already in use exits the same way")
    func simulatorOnBusyPort() async throws {
        let busy = try LoopbackSocket()
        let (status, output) = try await CrestCommand.run(
            ["psp-sim", "--host", "127.0.0.1", "--port", "\(busy.port)"], timeout: .seconds(5))
        #expect(status != nil && status != 0, "\(output)")
        #expect(output.contains("cannot listen on 127.0.0.1:\(busy.port): Address already in use"), "\(output)")
    }

    @Test("a data directory that cannot be created is one clear line and a non-zero exit")
    func unusableDataDirectory() async throws {
        // A regular file where the directory's parent should be: refused even for root.
        let file = temporaryDirectory("file")
        try Data("x".utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let (status, output) = try await CrestCommand.run(
            ["serve", "--port", "0", "--data-dir", file.appending(path: "data").path], timeout: .seconds(10))
        #expect(status != nil && status != 0, "\(output)")
        #expect(output.contains("cannot create the data directory \(file.path)/data: Not a directory"), "\(output)")
    }

    @Test("SIGTERM at any moment of start-up, or once listening, ends crest serve within the drain limit")
    func sigtermEndsServe() async throws {
        let directory = temporaryDirectory("sigterm")
        defer { try? FileManager.default.removeItem(at: directory) }
        // Sent with kill(2), not Process.terminate(), and never in the same instant as the launch:
        // Foundation's process bookkeeping is the suspect of a crash seen in Process.run().
        for delay in [Duration.milliseconds(10), .milliseconds(30), .milliseconds(100), .milliseconds(300), .seconds(1)] {
            let (process, output) = CrestCommand.process(
                ["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", directory.path, "--admin-token", "t"])
            try CrestCommand.launch(process)
            try await Task.sleep(for: delay)
            kill(process.processIdentifier, SIGTERM)
            let ended = try await eventually(timeout: .seconds(45), every: .milliseconds(20)) { !process.isRunning }
            if !ended { kill(process.processIdentifier, SIGKILL) }
            #expect(ended, "SIGTERM after \(delay) did not end it: \(output.value)")
        }
        // Once listening, the stop is graceful: exit 0.
        let crest = try await CrestProcess(dataDirectory: directory)
        await crest.expectGracefulStop()
    }

    private func temporaryDirectory(_ name: String) -> URL {
        FileManager.default.temporaryDirectory.appending(path: "crest-startup-\(name)-\(UUID().uuidString)")
    }
}
