import Foundation
import Synchronization

/// Undoes what a process left running should it end without undoing it itself — a crash, a
/// `kill -9`, CI's time limit. One shell (its own process group, so a signal to the test's group
/// does not reach it) polls the watched process every second; when it is gone, the shell runs
/// every clean-up still registered, all at once, and removes its directory.
///
/// Every ``ChildProcess`` the tests start registers "signal its process group" while it runs (a
/// `crest serve`, `psp-sim`, Prometheus, chromedriver with its browser); servers that leave their
/// starter's group — PostgreSQL under `pg_ctl`, nginx, a deployment — register their own stop.
/// Without it, a crashed test run left ~20 servers, a deployment's PostgreSQL and nginx and a
/// browser running for hours.
///
/// ```swift
/// let registration = Watchdog.shared.register("rm -rf \(Watchdog.quoted(scratch.path))")
/// // … the child ends normally:
/// registration.cancel()
/// ```
public final class Watchdog: Sendable {
    /// The watchdog of this test process, started on first use.
    public static let shared = Watchdog(watching: getpid())

    public let watched: pid_t
    /// One `<n>.sh` per registered clean-up.
    public let directory: URL
    private let next = Atomic<Int>(0)
    private let shell: ChildProcess?

    /// Watches `pid` (a test's own process, or in its tests a stand-in).
    public init(watching pid: pid_t) {
        watched = pid
        directory = URL(filePath: "/tmp").appending(path: "crest-watchdog-\(pid)-\(UUID().uuidString.prefix(8))")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let dir = Self.quoted(directory.path)
            let shell = ChildProcess(
                executable: "/bin/sh",
                arguments: [
                    "-c",
                    "while kill -0 \(pid) 2>/dev/null; do sleep 1; done; for f in \(dir)/*.sh; do [ -f \"$f\" ] && sh \"$f\" & done; wait; rm -rf \(dir)",
                ], watched: false)
            try shell.run()
            self.shell = shell
        } catch {
            // Nothing watches then; the tests still clean up after themselves when they end normally.
            FileHandle.standardError.write(Data("crest tests: no watchdog (\(error)); children may outlive a crash\n".utf8))
            self.shell = nil
        }
    }

    /// Whether the watchdog's shell runs (it ends after the watched process does, its clean-ups run).
    public var isRunning: Bool { shell?.isRunning ?? false }

    /// `script` (`sh`) runs if the watched process ends before `cancel()` is called.
    public func register(_ script: String) -> Registration {
        let file = directory.appending(path: "\(next.add(1, ordering: .relaxed).oldValue).sh")
        // Written whole under another name, then renamed: the shell never runs half a script.
        let partial = file.appendingPathExtension("partial")
        do {
            try Data(script.utf8).write(to: partial)
            try FileManager.default.moveItem(at: partial, to: file)
        } catch {
            FileHandle.standardError.write(Data("crest tests: watchdog registration failed (\(error))\n".utf8))
        }
        return Registration(file: file)
    }

    /// Signals the process group `pid` leads (a child started with its own group): SIGTERM, and
    /// SIGKILL to what is left 3 s later.
    public func registerProcessGroup(_ pid: pid_t) -> Registration {
        register("kill -TERM -\(pid) 2>/dev/null || exit 0; sleep 3; kill -KILL -\(pid) 2>/dev/null")
    }

    /// A registered clean-up; `cancel()` once what it undoes is undone.
    public struct Registration: Sendable {
        let file: URL

        public func cancel() {
            try? FileManager.default.removeItem(at: file)
        }
    }

    /// `text` as one shell word.
    public static func quoted(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: #"'\''"#) + "'"
    }
}
