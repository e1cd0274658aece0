import AsyncHTTPClient
import CrestTestSupport
import Foundation
import NIOHTTP1
import Testing

/// `crest serve`'s options for the PostgreSQL store, refused before anything starts when out of range.
@Suite("crest serve: store options")
struct ServeOptionsTests {
    @Test("started with a soft limit of 256 open files, crest raises it to the hard limit")
    func openFilesRaised() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-nofile-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let serve = ChildProcess(
            executable: "/usr/bin/prlimit",
            arguments: [
                "--nofile=256:", CrestCommand.executable.path, "serve", "--host", "127.0.0.1", "--port", "0",
                "--data-dir", directory.path, "--admin-token", "nofile-admin-token",
            ])
        try serve.run()
        defer {
            serve.terminate()
            _ = serve.waitUntilExit(within: .seconds(30))
        }
        /// The soft and hard limits on open files `/proc` shows for the process.
        func limits() throws -> [String] {
            let text = try String(contentsOfFile: "/proc/\(serve.processIdentifier)/limits", encoding: .utf8)
            let line = text.split(separator: "\n").first { $0.hasPrefix("Max open files") } ?? ""
            return line.split(separator: " ").dropFirst(3).prefix(2).map(String.init)
        }
        // Once prlimit has become crest (before, /proc shows prlimit's own limits) and crest's main ran.
        func isCrest() -> Bool {
            (try? String(contentsOfFile: "/proc/\(serve.processIdentifier)/comm", encoding: .utf8))?.hasPrefix("crest") == true
        }
        let raised = try await eventually(timeout: .seconds(30)) { try isCrest() && limits().first != "256" }
        let shown = try limits()
        #expect(raised && shown.count == 2 && shown[0] == shown[1], "soft and hard: \(shown)")
    }

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
            (["--database-timeout-ms", "99"], "database timeout must be 100…600,000 ms"),
            (["--database-connections", "0"], "database connections must be 1…1,000"),
            (["--database-connections", "1001"], "database connections must be 1…1,000"),
        ] {
            let output = try await expectUsageExit(base + extra, saying: message)
            #expect(!output.contains("cannot open the PostgreSQL store"), "\(extra): \(output)")
        }
    }
}

/// Each integer option is declared once: its help, its environment variable and its refusal agree.
@Suite("crest serve: options declared once")
struct DeclaredOptionsTests {
    @Test(
        "the help names each option's range, variable and default; a value outside the range, by flag or by environment, is refused naming the same range"
    )
    func helpAndRefusalAgree() async throws {
        let (_, help) = try await CrestCommand.run(["serve", "--help"], timeout: .seconds(30))
        let flat = help.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        for (range, env, fallback) in [
            ("0…65,535", "CREST_PORT", "8080"), ("1…1,024", "CREST_JOB_WORKERS", "100"),
            ("1…3,600 seconds", "CREST_JOB_LEASE_SECONDS", "30 seconds"), ("1…60,000 ms", "CREST_DATABASE_WAIT_MS", "2000 ms"),
            ("1…600,000 ms", "CREST_PROVIDER_TIMEOUT_MS", "3000 ms"),
            ("100…600,000 ms", "CREST_DATABASE_TIMEOUT_MS", "10000 ms"),
        ] {
            #expect(flat.contains("Range \(range) [env: \(env)] (default: \(fallback))"), "\(env): \(flat)")
        }
        try await expectUsageExit(["serve", "--port", "65536"], saying: "port must be 0…65,535")
        let (status, output) = try await CrestCommand.run(
            ["serve", "--port", "0", "--data-dir", "/nonexistent/never"], environment: ["CREST_JOB_WORKERS": "0"],
            timeout: .seconds(30))
        #expect(status == 64 && output.contains("job workers must be 1…1,024"), "\(output)")
    }
}

/// `crest serve`'s options for the stock gates' memory.
@Suite("crest serve: gate options")
struct GateOptionsTests {
    @Test("gate, batch, log and payment options out of range: a clear message and a usage exit")
    func badGateOptions() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-options-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let base = ["serve", "--port", "0", "--data-dir", directory.path, "--admin-token", "t"]
        for (extra, message) in [
            (["--refusal-memory=-1"], "refusal memory must be 0…10,000,000 keys"),
            (["--refusal-memory", "10000001"], "refusal memory must be 0…10,000,000 keys"),
            (["--gate-idle-seconds", "0"], "gate idle time must be 1…86,400 seconds"),
            (["--gate-idle-seconds", "86401"], "gate idle time must be 1…86,400 seconds"),
            (["--batch-linger-below", "0"], "batch linger below must be 1…100,000 requests"),
            (["--batch-window-us", "1000001"], "batch window must be 0…1,000,000 µs"),
            (["--log-format", "xml"], "unknown log format xml: text or json"),
            (["--log-level", "loud"], "unknown log level loud"),
            (["--payment-creation", "later"], "--payment-creation must be order or checkout, not later"),
        ] {
            try await expectUsageExit(base + extra, saying: message)
        }
    }

    @Test("overload options that cannot work: a clear message and a usage exit, before listening")
    func badOverloadOptions() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-options-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let base = ["serve", "--port", "0", "--data-dir", directory.path, "--admin-token", "t"]
        for (extra, message) in [
            (["--write-path-min", "100", "--write-path-max", "10"], "the maximum (10) is below the minimum (100)"),
            (["--write-path-limit", "8"], "the initial limit (8) is outside 16…4096"),
            (["--write-path-wait-ms=-5"], "write path wait must be 0…10,000 ms"),
            (["--max-connections", "0"], "max connections must be 1…1,000,000"),
            (["--listen-backlog", "0"], "listen backlog must be 1…65,535"),
            (["--max-connections-per-address=-1"], "max connections per address must be 0…1,000,000"),
            (["--listener-nice", "20"], "listener nice must be 0…19"),
            (["--ops-port", "70000"], "ops port must be 0…65,535 (got 70000)"),
            (["--ops-port", "x"], "ops port must be 0…65,535 (got x)"),
            (["--buyer-rate=-1"], "buyer rate must be 0…1,000,000 per second"),
            (["--trusted-proxies", "10.0.0.0/40"], "10.0.0.0/40 is not an address or CIDR"),
        ] {
            try await expectUsageExit(base + extra, saying: message)
        }
    }

    @Test("with --gate-idle-seconds 1 an idle sale's gate is dropped, and the sale answers as before")
    func idleGateDropped() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-gate-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let crest = try await CrestProcess(
            arguments: [
                "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", directory.path,
                "--admin-token", CrestProcess.adminToken, "--log-level", "info", "--gate-idle-seconds", "1",
            ],
            listening: "crest listening on")
        let status = try await stopped(crest) { http in
            let client = CrestClient(http: http, port: crest.port)
            let sale = try await client.createSale(stock: 1, adminToken: CrestProcess.adminToken)
            let first = try await client.order(sale: sale, key: "k1", buyer: "ana")
            #expect(first.status == 201)
            let dropped = try await eventually(timeout: .seconds(60)) { crest.log.contains("dropped idle stock gates") }
            #expect(dropped, "\(crest.log)")
            let again = try await client.order(sale: sale, key: "k1", buyer: "ana")
            #expect(again.status == 201 && again.id == first.id, "the key replays its order after the reload")
            #expect(try await client.order(sale: sale, key: "k2", buyer: "bob").status == 409)
        }
        #expect(status == 0)
    }
}

/// Runs `body` with an HTTP client against `crest`, then shuts both down — also when `body`
/// throws — and returns crest's exit status after SIGTERM.
private func stopped(_ crest: CrestProcess, after body: (HTTPClient) async throws -> Void) async throws -> Int32 {
    do {
        try await HTTPClient(eventLoopGroupProvider: .singleton).closing(body)
    } catch {
        _ = await crest.stop()
        throw error
    }
    return await crest.stop()
}

/// `--ops-port`: the control plane on a listener of its own.
@Suite("crest serve: the operations port")
struct OperationsPortTests {
    @Test("with --ops-port, probes, scrapes and the API answer on a second port, on the same engine")
    func operationsPort() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-ops-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let crest = try await CrestProcess(dataDirectory: directory, extraArguments: ["--ops-port", "0"])
        let status = try await stopped(crest) { http in
            let listening = try Regex(#"crest operations listening on http://127\.0\.0\.1:(\d+)"#)
            var opsPort: Int?
            _ = try await eventually(timeout: .seconds(30)) {
                opsPort = crest.log.firstMatch(of: listening).flatMap { Int($0.output[1].substring ?? "") }
                return opsPort != nil
            }
            let port = try #require(opsPort, "\(crest.log)")
            #expect(port != crest.port)
            let sale = try await CrestClient(http: http, port: crest.port).createSale(stock: 3, adminToken: CrestProcess.adminToken)
            let operations = CrestClient(http: http, port: port)
            for path in ["/healthz", "/readyz", "/metrics"] {
                #expect(try await operations.call(.GET, path).status == 200, "\(path)")
            }
            let read = try await operations.call(.GET, "/v1/sales/\(sale)", headers: CrestClient.admin)
            #expect(read.status == 200 && read.id == sale, "the sale made on --port, read on --ops-port")
        }
        #expect(status == 0, "both listeners stop on SIGTERM")
    }
}

/// `--listener-nice`: the event loops of `--port` below the rest of the process.
@Suite("crest serve: the listener's priority")
struct ListenerNiceTests {
    /// `crest serve`'s arguments, and the nice steps its listener's loops take.
    static let niceCases: [([String], Int32)] = [(["--listener-nice", "4"], 4), ([], 5), (["--listener-nice", "0"], 0)]

    @Test(
        "the event loops of --port run --listener-nice steps below the process (5 unless given), nothing else does, and orders are taken; 0 lowers none",
        arguments: niceCases)
    func listenerLoopsLowered(arguments: [String], steps: Int32) async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-nice-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let crest = try await CrestProcess(dataDirectory: directory, extraArguments: arguments)
        let status = try await stopped(crest) { http in
            let pid = crest.process.processIdentifier
            let threads = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task").compactMap {
                try? Self.thread(pid: pid, task: $0)
            }
            let process = try #require(threads.first { $0.id == pid }, "the main thread")
            // Event loops only ("NIO-ELT-<group>-#<thread>"): libdispatch sets its own threads'
            // values by their queues' QoS.
            let loops = threads.filter { $0.name.hasPrefix("NIO-") }
            let lowered = loops.filter { $0.nice != process.nice }
            if steps == 0 {
                #expect(lowered.isEmpty, "no loop is lowered: \(threads)")
            } else {
                #expect(!lowered.isEmpty && lowered.allSatisfy { $0.nice == process.nice + steps }, "\(threads)")
                // One group's loops, the listener's.
                #expect(Set(lowered.map { $0.name.split(separator: "#")[0] }).count == 1, "one group: \(lowered)")
                #expect(lowered.allSatisfy { $0.name.hasPrefix("NIO-ELT-") }, "only event loops: \(lowered)")
                #expect(loops.count - lowered.count >= 2, "the shared loops and the committers' threads: \(threads)")
            }
            let client = CrestClient(http: http, port: crest.port)
            let sale = try await client.createSale(stock: 1, adminToken: CrestProcess.adminToken)
            #expect(try await client.order(sale: sale, key: "k1", buyer: "ana").status == 201)
        }
        #expect(status == 0, "its own loops stop on SIGTERM")
    }

    /// A thread's id, name and nice value, from `/proc/<pid>/task/<tid>/stat` (the nice value is
    /// its 19th field; the name, in parentheses, may hold spaces).
    static func thread(pid: Int32, task: String) throws -> (id: Int32, name: String, nice: Int32) {
        let stat = try String(contentsOfFile: "/proc/\(pid)/task/\(task)/stat", encoding: .utf8)
        let open = try #require(stat.firstIndex(of: "("))
        let close = try #require(stat.lastIndex(of: ")"))
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return (try #require(Int32(task)), String(stat[stat.index(after: open)..<close]), try #require(Int32(fields[16])))
    }
}

/// A crowd opens its connections at once, faster than the event loops accept them.
@Suite("crest serve: the listen backlog")
struct ListenBacklogTests {
    @Test(
        "connections arriving while crest accepts none wait in the kernel's queue: the default holds a crowd's (Hummingbird's 256 did not), --listen-backlog sets it"
    )
    func backlogHoldsACrowd() async throws {
        let crowd = 320
        let somaxconn =
            (try? String(contentsOfFile: "/proc/sys/net/core/somaxconn", encoding: .utf8))
            .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 4_096
        // The kernel holds backlog + 1 completed connections; it caps the backlog at somaxconn.
        for (extra, held) in [([], min(crowd, somaxconn + 1)), (["--listen-backlog", "40"], 41)] {
            let directory = FileManager.default.temporaryDirectory.appending(path: "crest-backlog-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: directory) }
            let crest = try await CrestProcess(dataDirectory: directory, extraArguments: extra)
            // Stopped, crest accepts nothing: what completes is what the listen queue holds.
            let pid = crest.process.processIdentifier
            kill(pid, SIGSTOP)
            let stopped = try await eventually(timeout: .seconds(10), every: .milliseconds(5)) { processState(pid) == "T" }
            let completed = completedHandshakes(toPort: crest.port, count: crowd, within: .milliseconds(700))
            kill(pid, SIGCONT)
            #expect(stopped)
            #expect(completed == held, "\(extra): \(completed) of \(crowd) connections completed, expected \(held)")
            await crest.expectGracefulStop()
        }
    }

    /// The state letter of process `pid` (`R`, `S`, `T` when stopped…), from `/proc/<pid>/stat`.
    private func processState(_ pid: Int32) -> Character? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let end = stat.lastIndex(of: ")")
        else { return nil }
        return stat[end...].dropFirst().first { !$0.isWhitespace }
    }
}

/// Runs `crest` with `arguments`, expects its usage exit (64) with `message` in its output, and
/// returns the output.
@discardableResult
func expectUsageExit(
    _ arguments: [String], saying message: String, environment: [String: String] = [:],
    sourceLocation: SourceLocation = #_sourceLocation
) async throws -> String {
    let (status, output) = try await CrestCommand.run(arguments, environment: environment, timeout: .seconds(60))
    #expect(status == 64, "\(arguments): \(output)", sourceLocation: sourceLocation)
    #expect(output.contains(message), "\(arguments): \(output)", sourceLocation: sourceLocation)
    return output
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
                let decoded =
                    String(decoding: first[..<complete], as: UTF8.self)
                    + String(decoding: first[complete...] + bytes[cut...], as: UTF8.self)
                #expect(decoded == text, "\(text) cut at \(cut)")
                #expect(!decoded.contains("\u{FFFD}"))
            }
        }
    }
}
