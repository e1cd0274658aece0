import CrestTestSupport
import Foundation
import Testing

/// `deploy/prometheus/alerts.yml` as Prometheus reads it: `promtool check rules` accepts every rule,
/// and `promtool test rules` runs alerts.test.yml and alerts.slow-burn.test.yml — each alert fires on the series that should raise
/// it and stays silent on the others.
@Suite("Alert rules, checked and unit-tested by promtool")
struct AlertRulesTests {
    static let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// promtool is on the machine (`.ci/run` installs Debian's prometheus); outside CI a machine
    /// without it skips, in CI the test runs and fails.
    static var available: Bool { promtool != nil || ProcessInfo.processInfo.environment["CI"] != nil }

    static let testFiles = ["alerts.test.yml", "alerts.slow-burn.test.yml"]

    static let rules = URL(filePath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appending(path: "deploy/prometheus")

    @Test(
        "promtool accepts every rule, and every alert's unit tests pass",
        .enabled(if: available, "promtool is not installed (apt-get install prometheus)"))
    func promtoolPasses() async throws {
        let promtool = try #require(Self.promtool, "promtool is not installed: .ci/run installs Debian's prometheus")
        // Off the concurrency pool: promtool runs for seconds (22 s in a full CI run), and a test
        // that waits for it on one of the pool's two threads starves every other test meanwhile.
        let check = try await offPool { try Self.run(promtool, ["check", "rules", "alerts.yml"]) }
        #expect(check.status == 0, "\(check.output)")
        #expect(check.output.contains("SUCCESS"), "\(check.output)")
        let test = try await offPool { try Self.run(promtool, ["test", "rules"] + Self.testFiles) }
        #expect(test.status == 0, "\(test.output)")
    }

    @Test("every alert of alerts.yml has a unit test that expects it to fire")
    func everyAlertTested() throws {
        let rules = try String(contentsOf: Self.rules.appending(path: "alerts.yml"), encoding: .utf8)
        let tests = try Self.testFiles.map { try String(contentsOf: Self.rules.appending(path: $0), encoding: .utf8) }
            .joined(separator: "\n")
        let alerts = rules.matches(of: /- alert: (\w+)/).map { String($0.output.1) }
        #expect(alerts.count >= 12, "\(alerts)")
        // Expectations of an alert with at least one alert in them (firing), and with none (silent).
        let firing = Set(tests.matches(of: /alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels/).map { String($0.output.1) })
        let silent = Set(tests.matches(of: /alertname: (\w+)\n\s+exp_alerts: \[\]/).map { String($0.output.1) })
        for alert in alerts {
            #expect(firing.contains(alert), "\(alert) has no test where it fires")
            #expect(silent.contains(alert), "\(alert) has no test where it stays silent")
        }
    }

    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        try ChildProcess.runToEnd(executable, arguments, currentDirectory: rules.path)
    }
}
