import CoreMetrics
import CrestCore
import CrestFixtures
import Foundation
import Prometheus
import Testing

@testable import CrestHTTP

/// `/metrics` is read by people as well as by Prometheus: every series says what it measures.
@Suite("Metrics say what they measure")
struct MetricsHelpTests {
    @Test("after an order is placed and paid, every family on /metrics has a # HELP line, and no meaningless error series")
    func everyFamilyHasHelp() async throws {
        try await PaymentFixture.with { fixture in
            let sale = try await fixture.sale(stock: 2)
            let placed = try await fixture.order(sale, buyer: "ana")
            try await fixture.pay(try await fixture.waitFor(placed.id) { $0.payment != nil })
            try await fixture.waitFor(placed.id) { $0.status == .paid }
            _ = try await fixture.postWebhook(Data("{}".utf8), signature: nil)
        }
        let text = TestMetrics.registry.emitToString()
        let typed = Set(
            text.matches(of: try Regex(#"# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) "#)).map { $0.output[1].substring.map(String.init) ?? "" })
        let helped = Set(
            text.matches(of: try Regex(#"# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S"#)).map { $0.output[1].substring.map(String.init) ?? "" })
        #expect(typed.isSuperset(of: ["hb_requests", "crest_order_attempts_total", "crest_provider_calls_total"]))
        #expect(typed.subtracting(helped).isEmpty, "without help: \(typed.subtracting(helped).sorted())")
        #expect(!text.contains("hb_request_errors"), "a series of zeros labelled error_type=\"200\"")
    }

    @Test("every metric named in the sources has its help in the catalog")
    func catalogCoversTheSources() throws {
        let sources = URL(filePath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appending(path: "Sources")
        var named: Set<String> = []
        let files = FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil)
        while let file = files?.nextObject() as? URL {
            guard file.pathExtension == "swift" else { continue }
            let text = try String(contentsOf: file, encoding: .utf8)
            named.formUnion(text.matches(of: /"(crest_[a-z_]+)"/).map { String($0.output.1) })
        }
        #expect(named.count > 15, "\(named)")
        let missing = named.filter { MetricsCatalog.help(for: $0).isEmpty }
        #expect(missing.isEmpty, "no help for \(missing.sorted())")
    }

    @Test(
        "an order's life is measured in buckets that reach its longest payment window; a request's stay fine, the targets bounds"
    )
    func lifetimeBuckets() throws {
        let registry = PrometheusCollectorRegistry()
        let factory = CrestMetricsFactory(registry: registry)
        factory.makeTimer(label: "crest_order_lifecycle_seconds", dimensions: [("stage", "paid")])
            .recordNanoseconds(20 * 60 * 1_000_000_000)
        factory.makeTimer(label: "crest_order_stage_seconds", dimensions: [("stage", "commit")])
            .recordNanoseconds(3_000_000)
        let text = registry.emitToString()
        /// The finite bucket bounds of `series` and how many values each holds.
        func buckets(_ series: String) -> [(le: Double, count: Int)] {
            text.split(separator: "\n").compactMap { line in
                guard line.hasPrefix(series), let le = line.firstMatch(of: /le="([0-9.e+-]+)"\} ([0-9]+)/) else { return nil }
                return (Double(le.output.1) ?? .nan, Int(le.output.2) ?? -1)
            }
        }
        let lifecycle = buckets(#"crest_order_lifecycle_seconds_bucket{stage="paid""#)
        #expect((lifecycle.map(\.le).max() ?? 0) >= Double(SaleDraft.paymentWindowRange.upperBound), "\(lifecycle)")
        #expect(lifecycle.first { $0.count > 0 }?.le == 1_800, "20 minutes in the 30-minute bucket: \(lifecycle)")
        let commit = buckets(#"crest_order_stage_seconds_bucket{stage="commit""#)
        #expect(commit.first { $0.count > 0 }?.le == 0.003, "3 ms in the 3 ms bucket: \(commit)")
        #expect(commit.map(\.le).max() == 10, "\(commit)")
        // The latency targets are bounds (the alerts read 0.25), and between 2 and 100 ms no bucket
        // is wider than 1.5× its lower bound: a quantile read inside one is within 1.5× of the true one.
        let bounds = commit.map(\.le)
        #expect(Set([0.02, 0.1, 0.25]).isSubset(of: bounds), "\(bounds)")
        let ratios = zip(bounds, bounds.dropFirst()).filter { $0.0 >= 0.002 && $0.1 <= 0.1 }.map { $0.1 / $0.0 }
        #expect(!ratios.isEmpty && ratios.allSatisfy { $0 <= 1.5 + 1e-9 }, "\(ratios)")
    }

    @Test("names and label names are what Prometheus accepts; a clean name is kept as it is")
    func namesAreSanitized() {
        let (dotted, dottedLabels) = CrestMetricsFactory.sanitized("hb.requests", [("http.method", "GET"), ("kind", "a.b")])
        #expect(dotted == "hb_requests")
        #expect(dottedLabels.map(\.0) == ["http_method", "kind"])
        #expect(dottedLabels.map(\.1) == ["GET", "a.b"], "label values are not names")
        let (clean, cleanLabels) = CrestMetricsFactory.sanitized("crest_job_attempts_total", [("kind", "payment.create")])
        #expect(clean == "crest_job_attempts_total")
        #expect(cleanLabels.map(\.0) == ["kind"] && cleanLabels.map(\.1) == ["payment.create"])
        #expect(CrestMetricsFactory.sanitized("a-b c:d_é9", []).0 == "a_b_c:d___9", "each byte outside [a-zA-Z0-9_:]")
    }
}
