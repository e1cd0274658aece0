import AsyncHTTPClient
import CrestTestSupport
import Foundation
import NIOHTTP1
import Testing

/// `deploy/three-nodes.sh` as a user runs it: PostgreSQL, three nodes and nginx come up, a flash
/// sale through nginx passes `crest loadtest`'s audit, and `stop` takes everything down.
@Suite("deploy/three-nodes.sh")
struct DeployScriptTests {
    static let repository = URL(filePath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// nginx is on the machine (`.ci/run` installs it); outside CI a machine without it skips.
    static var nginxAvailable: Bool {
        ProcessInfo.processInfo.environment["CI"] != nil
            || ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"].contains {
                FileManager.default.isExecutableFile(atPath: $0)
            }
    }

    @Test(
        "start: PostgreSQL, three nodes and nginx; a sale through nginx passes the audit; stop ends every process",
        .enabled(if: nginxAvailable, "nginx is not installed (apt-get install nginx-light)"))
    func threeNodesBehindNginx() async throws {
        let directory = URL(filePath: "/tmp").appending(path: "crest-deploy-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: directory) }
        let balancer = freeLoopbackPort()
        let nodes = (0..<3).map { _ in freeLoopbackPort() }
        let environment = [
            "CREST_BIN": CrestCommand.executable.path, "CREST_DEPLOY_DIR": directory.path,
            "CREST_LB_PORT": "\(balancer)", "CREST_NODE_PORTS": nodes.map(String.init).joined(separator: " "),
            "CREST_PG_PORT": "\(freeLoopbackPort())", "CREST_ADMIN_TOKEN": "deploy-test-token",
            "CREST_BUYER_PASS_SECRETS": CrestProcess.buyerPassSecret,
            "CREST_LOG_LEVEL": "warning",
        ]
        let started = try await script("start", environment: environment)
        defer { _ = try? Self.runSync("stop", environment: environment) }
        #expect(started.status == 0, "\(started.output)")
        #expect(started.output.contains("http://127.0.0.1:\(balancer)"))

        let sale = try await CrestCommand.run(
            [
                "loadtest", "--url", "http://127.0.0.1:\(balancer)", "--admin-token", "deploy-test-token",
                "--buyer-pass-secret", CrestProcess.buyerPassSecret,
                "--stock", "300", "--buyers", "1500", "--concurrency", "16", "--requests", "1500",
                "--repeat-share", "0.1",
            ], timeout: .seconds(120))
        #expect(sale.status == 0, "\(sale.output)")
        #expect(sale.output.contains("audit: passed"))
        // nginx spread the crowd: every node placed orders.
        for port in nodes {
            let metrics = String(decoding: try await CrestClient(http: .shared, port: port).call(.GET, "/metrics").body, as: UTF8.self)
            let accepted = metrics.split(separator: "\n").first { $0.hasPrefix(#"crest_order_attempts_total{outcome="accepted"}"#) }
            #expect((accepted?.split(separator: " ").last).flatMap { Double($0) } ?? 0 > 0, "node on \(port): \(accepted ?? "no metric")")
        }

        let stopped = try await script("stop", environment: environment)
        #expect(stopped.status == 0, "\(stopped.output)")
        let pids = ["node1.pid", "node2.pid", "node3.pid", "nginx.pid"].filter {
            FileManager.default.fileExists(atPath: directory.appending(path: $0).path)
        }
        #expect(pids.isEmpty, "still running: \(pids)")
        #expect(!FileManager.default.fileExists(atPath: directory.appending(path: "pg/postmaster.pid").path))
    }

    private func script(_ command: String, environment: [String: String]) async throws -> (status: Int32, output: String) {
        try await offPool { try Self.runSync(command, environment: environment) }
    }

    /// Runs the script to its end, its output in a file (the servers it leaves running inherit its descriptors).
    private static func runSync(_ command: String, environment: [String: String]) throws -> (status: Int32, output: String) {
        let log = FileManager.default.temporaryDirectory.appending(path: "crest-deploy-\(UUID().uuidString).out")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: log) }
        let handle = try FileHandle(forWritingTo: log)
        defer { try? handle.close() }
        let process = ChildProcess(
            executable: repository.appending(path: "deploy/three-nodes.sh").path, arguments: [command],
            environment: ProcessInfo.processInfo.environment.merging(environment) { $1 }, output: .file(handle))
        try CrestCommand.launch(process)
        process.waitUntilExit()
        let status = process.terminationStatus
        return (status, (try? String(contentsOf: log, encoding: .utf8)) ?? "")
    }
}
