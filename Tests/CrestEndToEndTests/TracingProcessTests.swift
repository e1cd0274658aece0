import AsyncHTTPClient
import CrestTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOHTTP1
import Testing

@Suite("crest serve exports traces over OTLP/HTTP")
struct TracingProcessTests {
    /// The caller's W3C trace context, as a shop's checkout would send it.
    static let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
    static let parentSpanID = "00f067aa0ba902b7"

    @Test(
        "an order continues the caller's trace through its stages, the batch links to it, and provider and webhook calls carry a traceparent"
    )
    func orderTrace() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-e2e-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try await FakeCollector.with { collector in
            let crest = try await CrestProcess(
                dataDirectory: directory,
                extraArguments: [
                    "--otlp-endpoint", "http://127.0.0.1:\(collector.port)",
                    // The collector also plays the payment provider (answering 503): the payment job's
                    // call is enough to see the traceparent it sends.
                    "--provider-url", "http://127.0.0.1:\(collector.port)", "--provider-webhook-secret", "e2e",
                    "--log-format", "json",
                ],
                environment: ["OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_BSP_SCHEDULE_DELAY": "100"])
            let client = CrestClient(http: .crest, port: crest.port)
            let endpoint = try await client.call(
                .POST, "/v1/webhook-endpoints", headers: [("Authorization", "Bearer \(CrestProcess.adminToken)")],
                json: #"{"url":"http://127.0.0.1:\#(collector.port)/hooks","secret":"merchant-secret-0123456789"}"#)
            #expect(endpoint.status == 201)
            let sale = try await client.createSale(stock: 3, adminToken: CrestProcess.adminToken)
            let placed = try await client.call(
                .POST, "/v1/sales/\(sale)/orders",
                headers: [
                    ("Idempotency-Key", "k1"), ("traceparent", "00-\(Self.traceID)-\(Self.parentSpanID)-01"),
                    try await CrestClient.passHeader(for: "ana"),
                ],
                json: #"{"buyer":"ana","quantity":1}"#)
            #expect(placed.status == 201)

            var spans: [ExportedSpan] = []
            var providerTraceparents: [String] = []
            var webhookTraceparents: [String] = []
            let complete = try await eventually(timeout: .seconds(30), every: .milliseconds(100)) {
                spans = collector.spans.value
                providerTraceparents = collector.providerTraceparents.value
                webhookTraceparents = collector.webhookTraceparents.value
                let names = Set(spans.filter { $0.traceID == Self.traceID }.map(\.name))
                return names.isSuperset(of: ["order.place", "reservation.wait"])
                    && spans.contains { $0.name == "reservation.batch" }
                    && spans.contains { $0.name == "payment.create" && $0.traceID == Self.traceID }
                    && !providerTraceparents.isEmpty
                    && spans.contains { span in span.name == "job.run" && providerTraceparents.contains { $0.contains(span.traceID) } }
                    && crest.log.contains("job failed")
                    && spans.contains { span in span.name == "job.run" && webhookTraceparents.contains { $0.contains(span.traceID) } }
            }
            #expect(complete, "spans received: \(spans.map { "\($0.name) \($0.traceID)" })\n\(crest.log)")

            // Logs as JSON lines: every line a logger wrote parses, and a job's line carries the trace
            // and span ids of the job's span.
            let logLines = crest.log.split(separator: "\n").filter { $0.hasPrefix("{") }
            let objects = logLines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            #expect(!logLines.isEmpty && objects.count == logLines.count, "\(crest.log)")
            #expect(!crest.log.split(separator: "\n").contains { $0.contains(" error ") || $0.contains(" warning ") }, "a text line")
            let failedJobs = objects.filter { $0["message"] as? String == "job failed" }

            // In: the server's span continues the caller's trace, as a child of the caller's span.
            let server = spans.first { $0.traceID == Self.traceID && $0.parentSpanID == Self.parentSpanID }
            #expect(server != nil, "no span is a child of the caller's span")
            #expect(server?.kind == 2, "the request's span is a server span")
            // The engine's stages sit under it, in the same trace.
            let place = try #require(spans.first { $0.name == "order.place" && $0.traceID == Self.traceID })
            let wait = try #require(spans.first { $0.name == "reservation.wait" && $0.traceID == Self.traceID })
            #expect(wait.parentSpanID == place.spanID)
            #expect(place.attributes["crest.order.id"] == placed.id)
            // The batch that committed the order is a trace of its own, linked to the request's wait.
            let batches = spans.filter { $0.name == "reservation.batch" }
            #expect(batches.contains { $0.links.contains { $0.traceID == Self.traceID && $0.spanID == wait.spanID } })
            // The order's payment creation ran later, in its batch's job, in the caller's trace under
            // the placement; so its call to the provider sent the caller's trace on.
            let creation = spans.first { $0.name == "payment.create" && $0.traceID == Self.traceID }
            #expect(creation?.parentSpanID == place.spanID, "the payment's creation is not under the placement")
            #expect(creation?.attributes["crest.order.id"] == placed.id)
            // The provider answered 503: the order was handed to a job of its own, which runs in the
            // same trace under the placement.
            let paymentRun = spans.first {
                $0.name == "job.run" && $0.attributes["crest.job.kind"] == "payment.create" && $0.traceID == Self.traceID
            }
            #expect(paymentRun?.parentSpanID == place.spanID, "the handed-over payment job's run is not under the placement")
            #expect(paymentRun?.kind == 5, "a job run is a consumer span")
            #expect(providerTraceparents.allSatisfy { $0.contains(Self.traceID) }, "\(providerTraceparents)")
            // Out: the provider call and the webhook delivery carry well-formed traceparents of their
            // jobs' traces (the condition above matched their trace ids to exported job runs).
            for header in providerTraceparents + webhookTraceparents {
                #expect(header.wholeMatch(of: /00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]/) != nil, "traceparent \(header)")
            }
            // The job's failure (the provider answered 503) is an error of its span, and its JSON log
            // line carries that span's trace and span ids.
            let failedRuns = spans.filter { $0.name == "job.run" && $0.attributes["crest.job.outcome"] == "failed" }
            #expect(!failedRuns.isEmpty)
            #expect(
                failedJobs.contains { line in
                    failedRuns.contains { $0.traceID == line["trace_id"] as? String && $0.spanID == line["span_id"] as? String }
                }, "\(failedJobs)")
            await crest.expectGracefulStop()
        }
    }

    @Test("an --otlp-endpoint that is not an http(s) URL is refused at start")
    func badEndpoint() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-e2e-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let (status, output) = try await CrestCommand.run(
            ["serve", "--port", "0", "--data-dir", directory.path, "--otlp-endpoint", "collector:4318"],
            timeout: .seconds(30))
        #expect(status != nil && status != 0)
        #expect(output.contains("--otlp-endpoint must be an http or https URL"), "\(output)")
    }
}

/// A span as the OTLP/HTTP JSON encoding carries it (ids as lowercase hex).
struct ExportedSpan: Sendable {
    var name: String
    var traceID: String
    var spanID: String
    var parentSpanID: String
    var kind: Int
    var attributes: [String: String]
    var links: [(traceID: String, spanID: String)]

    /// Every span of one `ExportTraceServiceRequest` in JSON.
    static func all(in body: Data) -> [ExportedSpan] {
        guard let root = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] else { return [] }
        let resources = root["resourceSpans"] as? [[String: Any]] ?? []
        let scopes = resources.flatMap { $0["scopeSpans"] as? [[String: Any]] ?? [] }
        return scopes.flatMap { $0["spans"] as? [[String: Any]] ?? [] }.map { span in
            var attributes: [String: String] = [:]
            for attribute in span["attributes"] as? [[String: Any]] ?? [] {
                guard let key = attribute["key"] as? String, let value = attribute["value"] as? [String: Any] else { continue }
                attributes[key] = value.values.first.map { "\($0)" }
            }
            return ExportedSpan(
                name: span["name"] as? String ?? "",
                traceID: hex(span["traceId"]), spanID: hex(span["spanId"]), parentSpanID: hex(span["parentSpanId"]),
                kind: span["kind"] as? Int ?? 0, attributes: attributes,
                links: (span["links"] as? [[String: Any]] ?? []).map { (hex($0["traceId"]), hex($0["spanId"])) })
        }
    }

    /// OTLP's JSON spec wants hex ids; the protobuf JSON mapping gives base64. Either is read.
    private static func hex(_ value: Any?) -> String {
        guard let text = value as? String, !text.isEmpty else { return "" }
        if text.count % 16 == 0, text.allSatisfy(\.isHexDigit) { return text.lowercased() }
        guard let bytes = Data(base64Encoded: text) else { return text }
        return bytes.map { String(format: "%02x", $0) }.joined()
    }
}

/// An OpenTelemetry collector's OTLP/HTTP receiver (JSON), a payment provider that is down and a
/// merchant's webhook endpoint, on one loopback port: it keeps the spans it receives and the
/// `traceparent` of every provider call and webhook delivery.
struct FakeCollector: Sendable {
    let port: Int
    let spans: Locked<[ExportedSpan]>
    let providerTraceparents: Locked<[String]>
    let webhookTraceparents: Locked<[String]>

    /// Runs `body` while the collector listens; stops it after.
    static func with<T: Sendable>(_ body: @Sendable (FakeCollector) async throws -> T) async throws -> T {
        let spans = Locked<[ExportedSpan]>([])
        let traceparents = Locked<[String]>([])
        let hooks = Locked<[String]>([])
        let router = Router()
        router.post("/v1/traces") { request, _ -> Response in
            let received = ExportedSpan.all(in: Data(try await request.body.collect(upTo: 16 << 20).readableBytesView))
            spans.withLock { $0 += received }
            return Response(
                status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: "{}")))
        }
        @Sendable func traceparent(of request: Request) -> String? {
            request.headers.first { $0.name.canonicalName == "traceparent" }?.value
        }
        router.post("/v1/payment_intents") { request, _ -> Response in
            if let header = traceparent(of: request) { traceparents.withLock { $0.append(header) } }
            return Response(status: .serviceUnavailable)
        }
        router.post("/hooks") { request, _ -> Response in
            if let header = traceparent(of: request) { hooks.withLock { $0.append(header) } }
            return Response(status: .ok)
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        return try await app.test(.live) { client in
            try await body(
                FakeCollector(
                    port: try #require(client.port), spans: spans, providerTraceparents: traceparents,
                    webhookTraceparents: hooks))
        }
    }
}
