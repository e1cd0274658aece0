import CrestTestSupport
import Foundation
import Testing

/// The tests' `Watchdog`: what a process registered is undone when it dies without undoing it —
/// here a stand-in for the test process (`sleep`), killed with SIGKILL as a crashed run would be.
@Suite("Watchdog")
struct WatchdogTests {
    @Test(
        "a child that does not stop on SIGTERM is an issue of the test after its grace, with its output, and is killed: the suite does not wait for it for ever"
    )
    func stopHasAGrace() async throws {
        let output = Locked("")
        let child = ChildProcess(
            executable: "/bin/sh", arguments: ["-c", "trap '' TERM; echo ignoring SIGTERM; while :; do sleep 1; done"],
            output: .collect { data in output.withLock { $0 += String(decoding: data, as: UTF8.self) } })
        try child.run()
        #expect(try await eventually(timeout: .seconds(30)) { output.value.contains("ignoring SIGTERM") })
        let started = ContinuousClock.now
        let status = Locked<Int32?>(nil)
        await withKnownIssue {
            let ended = await CrestCommand.stop(child, grace: .seconds(1), log: { output.value })
            status.withLock { $0 = ended }
        } matching: { issue in
            String(describing: issue).contains("did not stop within 1.0 seconds of SIGTERM")
                && String(describing: issue).contains("ignoring SIGTERM")
        }
        #expect(status.value == SIGKILL, "killed after its grace")
        #expect(ContinuousClock.now - started < .seconds(60))
    }

    @Test(
        "the watched process killed: a registered child's process group is signalled and a registered script runs; a cancelled one does not; the watchdog ends"
    )
    func cleansUpAfterAKill() async throws {
        let standIn = ChildProcess(executable: "/bin/sleep", arguments: ["600"])
        try standIn.run()
        defer { standIn.terminate() }
        let watchdog = Watchdog(watching: standIn.processIdentifier)
        #expect(watchdog.isRunning)

        // A server in a group of its own: a shell that starts a grandchild in its group and waits.
        let grandchildFile = watchdog.directory.deletingLastPathComponent().appending(path: "\(watchdog.directory.lastPathComponent).pid")
        defer { try? FileManager.default.removeItem(at: grandchildFile) }
        let child = ChildProcess(
            executable: "/bin/sh", arguments: ["-c", "sleep 600 & echo $! > \(Watchdog.quoted(grandchildFile.path)); wait"],
            watched: false)
        try child.run()
        defer { child.terminate() }
        let written = try await eventually(timeout: .seconds(10)) {
            (try? String(contentsOf: grandchildFile, encoding: .utf8))?.hasSuffix("\n") == true
        }
        let grandchild = try #require(
            written ? pid_t((try String(contentsOf: grandchildFile, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)) : nil
        )
        defer { if Self.alive(grandchild) { kill(grandchild, SIGKILL) } }
        _ = watchdog.registerProcessGroup(child.processIdentifier)
        let marker = watchdog.directory.deletingLastPathComponent().appending(path: "\(watchdog.directory.lastPathComponent).ran")
        let cancelledMarker = marker.appendingPathExtension("cancelled")
        defer {
            try? FileManager.default.removeItem(at: marker)
            try? FileManager.default.removeItem(at: cancelledMarker)
        }
        _ = watchdog.register("touch \(Watchdog.quoted(marker.path))")
        watchdog.register("touch \(Watchdog.quoted(cancelledMarker.path))").cancel()

        // Alive: nothing is undone.
        try await Task.sleep(for: .milliseconds(1500))
        #expect(child.isRunning)
        #expect(!FileManager.default.fileExists(atPath: marker.path))

        kill(standIn.processIdentifier, SIGKILL)
        try #require(try await eventually(timeout: .seconds(30), every: .milliseconds(50)) { !child.isRunning })
        #expect(child.terminationStatus == SIGTERM)
        #expect(try await eventually(timeout: .seconds(10)) { !Self.alive(grandchild) })
        #expect(try await eventually(timeout: .seconds(30), every: .milliseconds(50)) { !watchdog.isRunning })
        #expect(FileManager.default.fileExists(atPath: marker.path))
        #expect(!FileManager.default.fileExists(atPath: cancelledMarker.path))
        #expect(!FileManager.default.fileExists(atPath: watchdog.directory.path))
    }

    @Test("a child the tests start is registered while it runs, and no longer once reaped")
    func childProcessesAreRegistered() async throws {
        let child = ChildProcess(executable: "/bin/sleep", arguments: ["600"])
        try child.run()
        // Other tests register theirs meanwhile: this child's is the one that names its group.
        let signal = "kill -TERM -\(child.processIdentifier) "
        let registration = Self.registrations().first { $0.script.contains(signal) }
        child.terminate()
        await offPool { child.waitUntilExit() }
        #expect(registration != nil)
        #expect(!Self.registrations().contains { $0.name == registration?.name })
    }

    /// The shared watchdog's registered scripts, by file name.
    static func registrations() -> [(name: String, script: String)] {
        let directory = Watchdog.shared.directory
        return ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).compactMap { name in
            (try? String(contentsOf: directory.appending(path: name), encoding: .utf8)).map { (name, $0) }
        }
    }

    /// A process that exists and is not a zombie waiting to be reaped.
    static func alive(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let end = stat.lastIndex(of: ")") else {
            return false
        }
        return stat[stat.index(end, offsetBy: 2)] != "Z"
    }
}
