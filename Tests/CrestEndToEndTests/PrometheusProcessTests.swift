import AsyncHTTPClient
import CrestTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// The Grafana dashboard and the alert rules against a real Prometheus: it scrapes a `crest serve`
/// while a sale runs, loads alerts.yml, and every panel's and every rule's expression is evaluated
/// through its HTTP API — each parses, and the core panels return data.
@Suite("Dashboard and alerts on a real Prometheus")
struct PrometheusProcessTests {
    static let prometheus = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// Prometheus is on the machine (`.ci/run` installs Debian's); outside CI a machine without it
    /// skips, in CI the test runs and fails.
    static var available: Bool { prometheus != nil || ProcessInfo.processInfo.environment["CI"] != nil }

    static let deploy = URL(filePath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appending(path: "deploy")

    /// The panels that must show data once a sale ran (the others may be empty: no provider here).
    static let corePanels: Set<String> = [
        "Requests by route and status", "Order attempts by outcome", "Placing an order: p99 by stage",
        "Placing an order: p50 by stage", "Stock per sale", "Refusals by reason", "Write path", "Jobs",
        "Readiness and lag",
    ]

    @Test(
        "every panel's and alert rule's expression parses on Prometheus, the core panels show the sale, the rules load healthy",
        .enabled(if: available, "prometheus is not installed (apt-get install prometheus)"))
    func dashboardOnPrometheus() async throws {
        let binary = try #require(Self.prometheus, "prometheus is not installed: .ci/run installs Debian's prometheus")
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-prom-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let crest = try await CrestProcess(dataDirectory: directory.appending(path: "crest"))
        let client = CrestClient(http: .crest, port: crest.port)

        // Prometheus scraping Crest every second, with Crest's alert rules.
        let port = freeLoopbackPort()
        try FileManager.default.copyItem(
            at: Self.deploy.appending(path: "prometheus/alerts.yml"), to: directory.appending(path: "alerts.yml"))
        try """
        global: { scrape_interval: 1s, evaluation_interval: 1s }
        rule_files: [alerts.yml]
        scrape_configs:
          - job_name: crest
            static_configs: [{ targets: ["127.0.0.1:\(crest.port)"] }]
        """.write(to: directory.appending(path: "prometheus.yml"), atomically: true, encoding: .utf8)
        let log = Locked("")
        let server = ChildProcess(
            executable: binary,
            arguments: [
                "--config.file=\(directory.appending(path: "prometheus.yml").path)",
                "--storage.tsdb.path=\(directory.appending(path: "data").path)",
                "--web.listen-address=127.0.0.1:\(port)",
            ],
            output: .collect { data in log.withLock { $0 += String(decoding: data, as: UTF8.self) } })
        try server.run()
        // Stopped here if the test throws (reaped by its own thread); waited for at the end, off
        // the concurrency pool.
        defer { server.terminate() }

        // A sale: orders placed, one sold out, a bad request.
        let sale = try await client.createSale(stock: 3, adminToken: CrestProcess.adminToken)
        for buyer in ["ana", "bo", "cy", "di"] {
            _ = try await client.call(
                .POST, "/v1/sales/\(sale)/orders",
                headers: [("Idempotency-Key", "k-\(buyer)"), try await CrestClient.passHeader(for: buyer)],
                json: #"{"quantity":1}"#)
        }
        _ = try await client.call(.POST, "/v1/sales/\(sale)/orders", headers: [try await CrestClient.passHeader(for: "ed")], json: "{}")

        let query = { (expression: String) async throws -> [String: Any] in
            var components = URLComponents(string: "http://127.0.0.1:\(port)/api/v1/query")!
            components.queryItems = [URLQueryItem(name: "query", value: expression)]
            let response = try await HTTPClient.crest.execute(
                HTTPClientRequest(url: components.url!.absoluteString), timeout: .seconds(10))
            let data = Data(try await response.body.collect(upTo: 1 << 22).readableBytesView)
            return (try JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        }
        func results(_ answer: [String: Any]) -> [Any] { (answer["data"] as? [String: Any])?["result"] as? [Any] ?? [] }
        // Scraped, and a few scrapes later there are rates to take.
        let scraped = try await eventually(timeout: .seconds(60), every: .milliseconds(500)) {
            let up = try? await query(#"up{job="crest"} == 1"#)
            let placed = try? await query("sum(crest_order_stage_seconds_count) > 0")
            return !(up.map(results) ?? []).isEmpty && !(placed.map(results) ?? []).isEmpty
        }
        #expect(scraped, "Prometheus never scraped Crest:\n\(log.value)")
        try await Task.sleep(for: .seconds(4))

        let dashboard = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: Self.deploy.appending(path: "grafana/crest-dashboard.json")))
                as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        #expect(panels.count >= 12)
        #expect(Set(panels.compactMap { $0["title"] as? String }).isSuperset(of: Self.corePanels))
        for panel in panels {
            let title = panel["title"] as? String ?? ""
            let expressions = (panel["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String }
            #expect(!expressions.isEmpty, "\(title) has no query")
            var shows = false
            for expression in expressions {
                let answer = try await query(expression)
                #expect(answer["status"] as? String == "success", "\(title): \(expression): \(answer)")
                shows = shows || !results(answer).isEmpty
            }
            if Self.corePanels.contains(title) { #expect(shows, "\(title) shows nothing after a sale") }
        }

        // Every rule of alerts.yml loaded and evaluated without error.
        let rules = try await eventually(timeout: .seconds(30), every: .milliseconds(500)) {
            let response = try await HTTPClient.crest.execute(
                HTTPClientRequest(url: "http://127.0.0.1:\(port)/api/v1/rules"), timeout: .seconds(10))
            let data = Data(try await response.body.collect(upTo: 1 << 22).readableBytesView)
            let groups =
                (((try? JSONSerialization.jsonObject(with: data)) as? [String: Any])?["data"] as? [String: Any])?["groups"]
                as? [[String: Any]] ?? []
            let all = groups.flatMap { $0["rules"] as? [[String: Any]] ?? [] }
            return all.count == 40 && all.allSatisfy { $0["health"] as? String == "ok" }
        }
        #expect(rules, "rules not all loaded and healthy:\n\(log.value)")
        // The stock invariant holds, so its alert is not firing.
        #expect(results(try await query(#"ALERTS{alertname="CrestStockInvariantBroken"}"#)).isEmpty)
        await crest.expectGracefulStop()
        server.terminate()
        await offPool { server.waitUntilExit() }
    }
}
