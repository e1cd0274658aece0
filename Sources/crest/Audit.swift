import ArgumentParser
import CrestStore
import Foundation
import Logging

/// `crest audit`: checks every promise of Crest's on a store's data — while Crest runs or not —
/// and exits 1 if one is broken.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Check every promise (stock, orders, payments, events, jobs) on a store's data; exit 1 on a violation.")

    @OptionGroup var store: StoreOptions

    @Flag(help: "Print the report as JSON on standard output") var json = false

    func run() async throws {
        try Console.bootstrapLogging(level: "warning")
        let settings = Settings()
        if store.postgresURL(settings) == nil {
            let directory = try store.directory(settings)
            guard FileManager.default.fileExists(atPath: directory.path) else {
                throw StartupFailure("no data directory at \(directory.path): give --data-dir or --database-url")
            }
        }
        let (opened, description) = try await store.open(settings, logger: Logger(label: "crest.audit"))
        let report: AuditReport
        do {
            report = StoreAudit.check(try await opened.auditRecords(at: Date()))
            try await opened.close()
        } catch {
            try? await opened.close()
            throw error
        }
        if json {
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .iso8601
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(Self.table(report, store: description))
        }
        if !report.passed { throw ExitCode(1) }
    }

    static func table(_ report: AuditReport, store: String) -> String {
        var lines = ["crest audit — \(store), read at \(report.readAt.formatted(.iso8601))"]
        let width = AuditCheck.allCases.map(\.rawValue.count).max() ?? 0
        for result in report.checks {
            let name = result.check.rawValue.padding(toLength: width, withPad: " ", startingAt: 0)
            let count = result.passed ? "\(result.checked) checked" : "\(result.violations) of \(result.checked) broken"
            lines.append(
                "  \(result.passed ? "ok  " : "FAIL") \(name)  \(count.padding(toLength: 22, withPad: " ", startingAt: 0)) \(result.rule)")
        }
        if !report.findings.isEmpty {
            lines.append(
                "violations\(report.findings.count == StoreAudit.findingsShown ? " (the first \(StoreAudit.findingsShown))" : ""):")
            for finding in report.findings { lines.append("  \(finding.check.rawValue)  \(finding.subject): \(finding.detail)") }
        }
        let broken = report.checks.reduce(0) { $0 + $1.violations }
        lines.append(report.passed ? "audit: passed" : "audit: failed, \(broken) violation\(broken == 1 ? "" : "s")")
        return lines.joined(separator: "\n")
    }
}
