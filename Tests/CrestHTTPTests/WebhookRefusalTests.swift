import CrestCore
import CrestFixtures
import CrestPayments
import Foundation
import Logging
import Synchronization
import Testing

@testable import CrestHTTP

/// A wrong webhook secret must not fail silently: orders would never become paid and nothing
/// would say why.
@Suite("Refused provider webhooks are visible")
struct WebhookRefusalTests {
    @Test("a refused webhook is counted by reason and told in a warning, at most one line per reason per interval")
    func refusalsAreLoggedAndThrottled() {
        _ = TestMetrics.registry
        let lines = CapturedLog()
        let now = Mutex(ContinuousClock.now)
        let refusals = WebhookRefusals(
            logger: Logger(label: "test") { _ in lines }, logInterval: .seconds(10), now: { now.withLock { $0 } })
        let series = #"crest_provider_webhooks_refused_total{reason="signature_mismatch"}"#
        let before = TestMetrics.value(of: series) ?? 0
        for _ in 0..<5 { refusals.refused(WebhookSignature.Failure.mismatch) }
        refusals.refused(WebhookSignature.Failure.stale)
        // At least: metrics are process-wide, and other suites send badly signed webhooks beside
        // this one (the instance's own count is the exact check, `refused_since_last_line` below).
        #expect((TestMetrics.value(of: series) ?? 0) >= before + 5, "every refusal counts")
        var logged = lines.entries
        #expect(logged.count == 2, "one line per reason: \(logged)")
        #expect(logged.allSatisfy { $0.level == .warning && $0.message == "provider webhook refused" })
        #expect(logged[0].metadata["reason"] == "signature_mismatch")
        #expect(logged[0].metadata["detail"]?.contains("--provider-webhook-secret") == true, "it says what to check")
        #expect(logged[1].metadata["reason"] == "signature_stale")

        now.withLock { $0 += .seconds(11) }
        refusals.refused(WebhookSignature.Failure.mismatch)
        logged = lines.entries
        #expect(logged.count == 3)
        #expect(logged[2].metadata["refused_since_last_line"] == "4", "the line tells how many were not logged")
        refusals.refused(UnavailableError(reason: "store down", retryAfterSeconds: 1))
        #expect(lines.entries.count == 3, "Crest being unavailable is not a refusal")
    }

    @Test("over HTTP: a webhook signed with the wrong secret is answered 401 and counted")
    func wrongSecretOverHTTP() async throws {
        try await PaymentFixture.with { fixture in
            let series = #"crest_provider_webhooks_refused_total{reason="signature_mismatch"}"#
            let before = TestMetrics.value(of: series) ?? 0
            let body = Data(#"{"id":"evt_1","type":"payment_intent.succeeded","created":0,"data":{}}"#.utf8)
            let answer = try await fixture.postWebhook(
                body, signature: WebhookSignature.sign(body, secret: "not-the-secret", at: Date()))
            #expect(answer.status == 401)
            #expect((TestMetrics.value(of: series) ?? 0) >= before + 1)  // process-wide: at least
        }
    }
}

/// Log entries kept in memory, for tests that check what was logged.
final class CapturedLog: LogHandler, Sendable {
    struct Entry: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    private let stored = Mutex<[Entry]>([])

    var entries: [Entry] { stored.withLock { $0 } }

    var logLevel: Logger.Level {
        get { .trace }
        set {}
    }

    var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }

    func log(event: LogEvent) {
        let entry = Entry(
            level: event.level, message: event.message.description,
            metadata: (event.metadata ?? [:]).mapValues { "\($0)" })
        stored.withLock { $0.append(entry) }
    }
}
