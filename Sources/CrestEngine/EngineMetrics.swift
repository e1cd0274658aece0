import CrestCore
import CoreMetrics
import Metrics

/// The engine's metrics, through swift-metrics (exported for Prometheus by the executable).
struct EngineMetrics: Sendable {
    static let batchSizeLabel = "crest_batch_size"
    static let commitDurationLabel = "crest_batch_commit_duration_seconds"

    private let batchSize = Recorder(label: batchSizeLabel)
    private let commitDuration = Timer(label: commitDurationLabel, preferredDisplayUnit: .seconds)
    private let commitFailures = Counter(label: "crest_batch_commit_failures_total")

    func recordCommit(size: Int, duration: Duration) {
        batchSize.record(size)
        commitDuration.record(duration: duration)
    }

    func countCommitFailure() {
        commitFailures.increment()
    }

    private let attempts: [String: Counter] = Dictionary(
        uniqueKeysWithValues: (["accepted", "replayed", "unavailable"] + Self.reasons).map {
            ($0, Counter(label: "crest_order_attempts_total", dimensions: [("outcome", $0)]))
        })

    /// Counts one order attempt by how it ended: `accepted`, `replayed`, `unavailable` or a refusal reason.
    func countAttempt(_ outcome: String) {
        attempts[outcome]?.increment()
    }

    private static let reasons = [
        "sold_out", "buyer_limit_reached", "quantity_above_limit", "sale_not_open", "sale_closed", "sale_not_found",
        "order_not_found", "idempotency_key_reused", "request_in_progress", "attempt_cancelled", "not_pending",
    ]

    static func reason(_ error: OrderError) -> String {
        switch error {
        case .soldOut: "sold_out"
        case .buyerLimitReached: "buyer_limit_reached"
        case .quantityAboveLimit: "quantity_above_limit"
        case .saleNotOpen: "sale_not_open"
        case .saleClosed: "sale_closed"
        case .saleNotFound: "sale_not_found"
        case .orderNotFound: "order_not_found"
        case .idempotencyKeyReused: "idempotency_key_reused"
        case .requestInProgress: "request_in_progress"
        case .attemptCancelled: "attempt_cancelled"
        case .notPending: "not_pending"
        }
    }

    /// Publishes a sale's counters as `crest_sale_stock{sale, state}` gauges.
    func publish(_ counters: StockCounters, of saleID: SaleID) {
        let sale = saleID.description
        Gauge(label: "crest_sale_stock", dimensions: [("sale", sale), ("state", "total")]).record(counters.total)
        Gauge(label: "crest_sale_stock", dimensions: [("sale", sale), ("state", "available")]).record(
            counters.available)
        Gauge(label: "crest_sale_stock", dimensions: [("sale", sale), ("state", "reserved")]).record(counters.reserved)
        Gauge(label: "crest_sale_stock", dimensions: [("sale", sale), ("state", "sold")]).record(counters.sold)
    }
}
