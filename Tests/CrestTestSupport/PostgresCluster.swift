import Foundation
import Synchronization

/// A throw-away PostgreSQL cluster for the tests of this process: `initdb` into a temporary
/// directory, `postgres` on a free port of 127.0.0.1, stopped when the process exits (and by a
/// watchdog should the process be killed). Each test takes a database of its own.
///
/// PostgreSQL refuses to run as root; as root, the cluster runs as the `postgres` user.
/// When PostgreSQL cannot start, tests that need it fail — in CI and elsewhere — unless
/// `CREST_SKIP_POSTGRES=1` is set outside CI, which makes `shared()` return nil (and the
/// suite say so).
public final class PostgresCluster: Sendable {
    public let port: Int
    public let directory: URL
    private let binaries: URL
    private let runAs: String?
    /// Commits wait for their WAL to reach the OS (`synchronous_commit=on`): what a crash of the
    /// server (not of the machine) must not lose. `fsync` stays off either way — the machine does
    /// not crash in a test.
    private let durable: Bool

    public struct Unavailable: Error, CustomStringConvertible {
        public var description: String
    }

    /// The cluster of this test process, started on first use.
    public static func shared() async throws -> PostgresCluster? {
        if ProcessInfo.processInfo.environment["CI"] == nil,
            ProcessInfo.processInfo.environment["CREST_SKIP_POSTGRES"] == "1"
        {
            return nil
        }
        return try await started.value
    }

    /// A cluster of its own for a test that stops or restarts the server, which would disturb
    /// every other test on the shared one; `stop()` it at the end (it is also stopped at exit).
    /// `durable`: commits survive a crash of the server (see `crash(downFor:)`).
    public static func dedicated(durable: Bool = false) async throws -> PostgresCluster? {
        if ProcessInfo.processInfo.environment["CI"] == nil,
            ProcessInfo.processInfo.environment["CREST_SKIP_POSTGRES"] == "1"
        {
            return nil
        }
        return try await startOffPool(durable: durable)
    }

    private static let started = Task<PostgresCluster, any Error> { try await startOffPool(durable: false) }

    /// Started off the concurrency pool: `initdb` and `pg_ctl` are waited for synchronously.
    private static func startOffPool(durable: Bool) async throws -> PostgresCluster {
        try await offPool { try start(durable: durable) }
    }

    /// Runs `sql` with `psql` on the database at `url` (off the concurrency pool); the rows, one
    /// per line, columns split by `|`.
    public func psql(_ url: String, _ sql: String) async throws -> [[String]] {
        let output = try await offPool {
            try self.run("psql", [url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        }
        return output.split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
    }

    /// A new, empty database in the cluster; its URL.
    public func createDatabase() async throws -> String {
        let name = "crest_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16))"
        _ = try await offPool {
            try self.run(
                "psql", ["-h", "127.0.0.1", "-p", "\(self.port)", "-U", "crest", "-d", "postgres", "-q", "-c", "CREATE DATABASE \(name)"])
        }
        return url(database: name)
    }

    public func url(database: String) -> String {
        "postgres://crest@127.0.0.1:\(port)/\(database)?sslmode=disable"
    }

    /// Stops the server (fast shutdown) and starts it again on the same port and data.
    public func restart(downFor pause: Duration = .zero) async throws {
        _ = try await offPool { try self.run("pg_ctl", ["-D", self.directory.appending(path: "data").path, "-m", "fast", "-w", "stop"]) }
        if pause > .zero { try await Task.sleep(for: pause) }
        try await offPool { try self.startServer() }
    }

    /// `kill -9` of the postmaster: no shutdown at all. Its backends notice and end (every session
    /// is cut); once they are gone the server starts again on the same port and data, after
    /// `pause`, and recovers from its WAL.
    public func crash(downFor pause: Duration = .zero) async throws {
        kill(try postmasterPID(), SIGKILL)
        if pause > .zero { try await Task.sleep(for: pause) }
        // The old backends may hold the shared memory a few moments more: start until it works.
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            do {
                return try await offPool { try self.startServer() }
            } catch  where ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(250))
            }
        }
    }

    /// Freezes the server — the postmaster and every process it started, with `SIGSTOP` — for
    /// `pause`, then lets it go on (`SIGCONT`): its connections stay open, nothing answers, as when
    /// the machine stalls. Its clients' own deadlines are what the test is about.
    public func freeze(for pause: Duration) async throws {
        let postmaster = try postmasterPID()
        let processes = [postmaster] + Self.children(of: postmaster)
        for pid in processes { kill(pid, SIGSTOP) }
        defer { for pid in processes { kill(pid, SIGCONT) } }
        try await Task.sleep(for: pause)
    }

    private func postmasterPID() throws -> pid_t {
        let pidFile = directory.appending(path: "data/postmaster.pid")
        guard let first = try String(contentsOf: pidFile, encoding: .utf8).split(separator: "\n").first,
            let pid = pid_t(first)
        else { throw Unavailable(description: "no postmaster.pid") }
        return pid
    }

    /// The processes whose parent is `parent` (from /proc).
    private static func children(of parent: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> pid_t? in
            guard let pid = pid_t(entry),
                let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let end = stat.lastIndex(of: ")")
            else { return nil }
            // After the command's name: the state, then the parent's pid.
            let fields = stat[stat.index(after: end)...].split(separator: " ")
            return fields.count > 1 && pid_t(fields[1]) == parent ? pid : nil
        }
    }

    /// Stops the server at once (immediate shutdown).
    public func stop() async {
        await offPool { self.stopNow() }
    }

    private func stopNow() {
        _ = try? run("pg_ctl", ["-D", directory.appending(path: "data").path, "-m", "immediate", "-w", "stop"])
    }

    private init(port: Int, directory: URL, binaries: URL, runAs: String?, durable: Bool) {
        self.port = port
        self.directory = directory
        self.binaries = binaries
        self.runAs = runAs
        self.durable = durable
    }

    private static func start(durable: Bool) throws -> PostgresCluster {
        guard let binaries = findBinaries() else {
            throw Unavailable(description: "PostgreSQL binaries (initdb, pg_ctl) are neither on PATH nor in /usr/lib/postgresql/*/bin")
        }
        let runAs: String? = getuid() == 0 ? "postgres" : nil
        let directory = URL(filePath: "/tmp").appending(path: "crest-pg-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        if let runAs {
            try FileManager.default.setAttributes([.ownerAccountName: runAs], ofItemAtPath: directory.path)
        }
        var lastError: (any Error)?
        for _ in 0..<3 {
            let cluster = PostgresCluster(
                port: freeLoopbackPort(), directory: directory, binaries: binaries, runAs: runAs, durable: durable)
            do {
                if !FileManager.default.fileExists(atPath: directory.appending(path: "data").path) {
                    try cluster.run(
                        "initdb",
                        ["-D", directory.appending(path: "data").path, "-U", "crest", "--auth=trust", "-E", "UTF8", "--no-sync"])
                }
                try cluster.startServer()
                cluster.stopAtExit()
                return cluster
            } catch {
                lastError = error
            }
        }
        throw Unavailable(description: "PostgreSQL did not start: \(lastError.map { "\($0)" } ?? "?")")
    }

    /// `max_connections` leaves room for the full suite at its busiest: every test's nodes open
    /// their pools (up to 20 each, plus a listener and a lane) and the crash tests' processes
    /// theirs, all at once on a slow machine: ~330 at the peak of a run here, past the 300 that
    /// once failed CI ("too many clients").
    private func startServer() throws {
        let options = [
            "-p \(port)", "-c listen_addresses=127.0.0.1", "-c unix_socket_directories=\(directory.path)",
            "-c max_connections=1000", "-c fsync=off", "-c synchronous_commit=\(durable ? "on" : "off")", "-c full_page_writes=off",
            "-c shared_buffers=128MB",
        ].joined(separator: " ")
        try run(
            "pg_ctl",
            [
                "-D", directory.appending(path: "data").path, "-l", directory.appending(path: "server.log").path, "-o", options, "-w", "-t",
                "60", "start",
            ])
    }

    /// `atexit` stops the server when the test process ends normally; the ``Watchdog`` stops it
    /// (and removes its directory) when the process is killed — `pg_ctl` starts the server in a
    /// session of its own, which no signal to the test's children reaches.
    private func stopAtExit() {
        let data = directory.appending(path: "data").path
        let pgctl = Self.locate("pg_ctl", preferring: binaries).path
        let stop = runAs.map { "runuser -u \($0) -- " } ?? ""
        _ = Watchdog.shared.register(
            "\(stop)\(Watchdog.quoted(pgctl)) -D \(Watchdog.quoted(data)) -m immediate stop >/dev/null 2>&1; rm -rf \(Watchdog.quoted(directory.path))"
        )
        let first = Self.atExit.withLock { clusters in
            clusters.append(self)
            return clusters.count == 1
        }
        if first { atexit { for cluster in PostgresCluster.atExit.withLock({ $0 }) { cluster.stopNow() } } }
    }

    private static let atExit = Mutex<[PostgresCluster]>([])

    @discardableResult
    private func run(_ tool: String, _ arguments: [String]) throws -> String {
        let path = Self.locate(tool, preferring: binaries).path
        let (status, output) = try ChildProcess.runToEnd(
            runAs == nil ? path : "/usr/sbin/runuser", runAs.map { ["-u", $0, "--", path] + arguments } ?? arguments,
            currentDirectory: directory.path)
        guard status == 0 else {
            throw Unavailable(description: "\(tool) \(arguments.joined(separator: " ")) failed: \(output)")
        }
        return output
    }

    /// `tool` next to `initdb` if it is there, else from the candidates' other directories.
    private static func locate(_ tool: String, preferring directory: URL) -> URL {
        let fileManager = FileManager.default
        let preferred = directory.appending(path: tool)
        if fileManager.isExecutableFile(atPath: preferred.path) { return preferred }
        return candidateDirectories().map { $0.appending(path: tool) }.first { fileManager.isExecutableFile(atPath: $0.path) }
            ?? preferred
    }

    private static func candidateDirectories() -> [URL] {
        var candidates = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { URL(filePath: String($0)) }
        if let versions = try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql") {
            for version in versions.sorted(by: >) {
                candidates.append(URL(filePath: "/usr/lib/postgresql/\(version)/bin"))
            }
        }
        return candidates
    }

    private static func findBinaries() -> URL? {
        candidateDirectories().first { FileManager.default.isExecutableFile(atPath: $0.appending(path: "initdb").path) }
    }
}

/// A port nobody listens on now, below the kernel's range of ports for sockets bound to port 0.
public func freeLoopbackPort() -> Int {
    // Below the kernel's ephemeral range: a port handed out here is bound later (often again after
    // a kill -9 and a restart), and in between a server of another test that binds port 0 could be
    // given it if it came from that range.
    let ephemeralLow =
        (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))
        .flatMap { $0.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } } ?? 32_768
    for _ in 0..<200 {
        if let port = bindableLoopbackPort(Int.random(in: 10_000..<max(10_001, ephemeralLow))) { return port }
    }
    return bindableLoopbackPort(0) ?? 0
}

/// `port` (0: one the kernel picks) if a socket can be bound to it on 127.0.0.1 now.
private func bindableLoopbackPort(_ port: Int) -> Int? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    guard bound == 0 else { return nil }
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}
