import CrestCore
import CrestEngine
import HTTPTypes
import Hummingbird
import Metrics
import NIOCore
import Prometheus
import Synchronization

/// Liveness, readiness and the Prometheus scrape endpoint.
struct OperationsRoutes {
    struct Status: ResponseEncodable {
        var status: String
    }

    let engine: Engine
    let metrics: PrometheusCollectorRegistry
    let readings: ScrapeReadings

    func add(to router: Router<CrestRequestContext>) {
        router.get("healthz") { _, _ in Status(status: "ok") }
        router.get("readyz") { _, _ -> Status in
            guard await engine.isReady() else {
                throw UnavailableError(reason: "the store does not answer")
            }
            return Status(status: "ready")
        }
        router.get("metrics") { _, _ -> Response in
            await readings.update()
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: metrics.emitToBuffer())))
        }
    }
}

/// Gauges read when Prometheus scrapes, not kept up to date in between: the batch queue and the
/// store calls waiting for a connection; whether the store answers (`crest_ready`, as `/readyz`);
/// how many reconciliation differences wait for an operator
/// (`crest_reconciliation_differences_open`, read at most once a minute: it scans the reported items).
final class ScrapeReadings: Sendable {
    static let openDifferencesEvery: Duration = .seconds(60)

    private let engine: Engine
    private let ready = Gauge(label: "crest_ready")
    private let batchQueue = Gauge(label: "crest_batch_queue_depth")
    private let connectionWaiters = Gauge(label: "crest_database_connection_waiters")
    private let openDifferences = Gauge(label: "crest_reconciliation_differences_open")
    private let openDifferencesReadAt = Mutex<ContinuousClock.Instant?>(nil)

    init(engine: Engine) { self.engine = engine }

    func update() async {
        let saturation = engine.saturation
        batchQueue.record(saturation.batchQueue)
        connectionWaiters.record(saturation.connectionWaiters)
        let isReady = await engine.isReady()
        ready.record(isReady ? 1 : 0)
        guard isReady else { return }
        let now = ContinuousClock.now
        let due = openDifferencesReadAt.withLock { last in
            guard last.map({ now - $0 >= Self.openDifferencesEvery }) ?? true else { return false }
            last = now
            return true
        }
        guard due else { return }
        if let count = try? await engine.openReconciliationDifferences() { openDifferences.record(count) }
    }
}
