import AsyncHTTPClient
import CrestTestSupport
import Foundation
import NIOHTTP1
import Testing

/// `deploy/three-nodes.sh` as a user runs it: PostgreSQL, three nodes and nginx come up, a flash
/// sale through nginx passes `crest loadtest`'s audit, the control plane answers on its own
/// addresses, and `stop` takes everything down.
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
        "start: PostgreSQL, three nodes and nginx; a sale through nginx passes the audit; the control plane (--ops-port) answers apart, through nginx only its routes; stop ends every process",
        .enabled(if: nginxAvailable, "nginx is not installed (apt-get install nginx-light)"))
    func threeNodesBehindNginx() async throws {
        let directory = URL(filePath: "/tmp").appending(path: "crest-deploy-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: directory) }
        let balancer = freeLoopbackPort()
        let nodes = (0..<3).map { _ in freeLoopbackPort() }
        let control = freeLoopbackPort()
        let operations = (0..<3).map { _ in freeLoopbackPort() }
        let environment = [
            "CREST_BIN": CrestCommand.executable.path, "CREST_DEPLOY_DIR": directory.path,
            "CREST_LB_PORT": "\(balancer)", "CREST_NODE_PORTS": nodes.map(String.init).joined(separator: " "),
            "CREST_LB_OPS_PORT": "\(control)", "CREST_OPS_PORTS": operations.map(String.init).joined(separator: " "),
            "CREST_PG_PORT": "\(freeLoopbackPort())", "CREST_ADMIN_TOKEN": "deploy-test-token",
            "CREST_BUYER_PASS_SECRETS": CrestProcess.buyerPassSecret,
            "CREST_LOG_LEVEL": "warning",
        ]
        // Should this process die before the `stop` below, the watchdog stops the deployment: its
        // PostgreSQL and nginx leave the script's process group, and its nodes outlive the script.
        let exports = environment.sorted { $0.key < $1.key }.map { "export \($0.key)=\(Watchdog.quoted($0.value))" }
        let watch = Watchdog.shared.register(
            (exports + ["\(Watchdog.quoted(Self.repository.appending(path: "deploy/three-nodes.sh").path)) stop >/dev/null 2>&1"])
                .joined(separator: "\n"))
        let started = try await script("start", environment: environment)
        defer {
            _ = try? Self.runSync("stop", environment: environment)
            watch.cancel()
        }
        #expect(started.status == 0, "\(started.output)")
        #expect(started.output.contains("http://127.0.0.1:\(balancer)"))
        #expect(started.output.contains("control plane: http://127.0.0.1:\(control)"))

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
        // Each node's metrics on its --ops-port, the same process as its main port.
        for port in operations {
            let metrics = String(decoding: try await CrestClient(http: .crest, port: port).call(.GET, "/metrics").body, as: UTF8.self)
            let accepted = metrics.split(separator: "\n").first { $0.hasPrefix(#"crest_order_attempts_total{outcome="accepted"}"#) }
            #expect((accepted?.split(separator: " ").last).flatMap { Double($0) } ?? 0 > 0, "node on \(port): \(accepted ?? "no metric")")
        }

        // nginx's control-plane address: the probes and the provider's webhook route reach a node
        // (no provider is configured here: the node's own 503), nothing else of the API does.
        let controlPlane = CrestClient(http: .crest, port: control)
        #expect(try await controlPlane.call(.GET, "/readyz").status == 200)
        let webhook = try await controlPlane.call(.POST, "/v1/webhooks/provider", json: "{}")
        #expect(webhook.status == 503 && webhook.problemType == "urn:crest:problem:unavailable", "\(webhook)")
        let order = try await controlPlane.call(.GET, "/v1/sales")
        #expect(order.status == 404 && order.problemType == "urn:crest:problem:not-found", "\(order)")

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

    /// Runs the script to its end (its output in a file: the servers it leaves running inherit its descriptors).
    private static func runSync(_ command: String, environment: [String: String]) throws -> (status: Int32, output: String) {
        try ChildProcess.runToEnd(
            repository.appending(path: "deploy/three-nodes.sh").path, [command],
            environment: ProcessInfo.processInfo.environment.merging(environment) { $1 })
    }
}
