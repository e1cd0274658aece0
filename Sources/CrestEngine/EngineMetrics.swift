import CoreMetrics
import CrestCore
import Metrics
import Synchronization

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

    /// Answers of the payment provider that Crest refused to act on, by reason.
    static let providerAnswersRefusedLabel = "crest_provider_answers_refused_total"

    /// A payment whose final status the janitor learned from the provider, its webhook lost.
    func countDrift(_ status: PaymentStatus) {
        Counter(label: "crest_payment_drift_healed_total", dimensions: [("status", status.rawValue)]).increment()
    }

    func countProviderAnswerRefused(_ reason: String) {
        Counter(label: Self.providerAnswersRefusedLabel, dimensions: [("reason", reason)]).increment()
    }

    private let attempts: [String: Counter] = Dictionary(
        uniqueKeysWithValues: (["accepted", "replayed", "unavailable", "write_path_full"] + Self.reasons).map {
            ($0, Counter(label: "crest_order_attempts_total", dimensions: [("outcome", $0)]))
        })

    /// Counts one order attempt by how it ended: `accepted`, `replayed`, `unavailable`,
    /// `write_path_full` or a refusal reason.
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

    private let saleGauges = SaleGauges()

    /// Publishes a sale's counters as `crest_sale_stock{sale, state}` gauges.
    func publish(_ counters: StockCounters, of saleID: SaleID) {
        let gauges = saleGauges.gauges(of: saleID)
        gauges.total.record(counters.total)
        gauges.available.record(counters.available)
        gauges.reserved.record(counters.reserved)
        gauges.sold.record(counters.sold)
    }
}

/// The stock gauges of each sale, made once: every committed batch publishes its sales' counters,
/// and making a gauge looks it up in the registry (labels sanitised, under a lock) each time.
private final class SaleGauges: Sendable {
    struct Stock {
        var total, available, reserved, sold: Gauge
    }

    private let bySale = Mutex<[SaleID: Stock]>([:])

    func gauges(of saleID: SaleID) -> Stock {
        bySale.withLock { bySale in
            if let stock = bySale[saleID] { return stock }
            func gauge(_ state: String) -> Gauge {
                Gauge(label: "crest_sale_stock", dimensions: [("sale", saleID.description), ("state", state)])
            }
            let stock = Stock(
                total: gauge("total"), available: gauge("available"), reserved: gauge("reserved"), sold: gauge("sold"))
            bySale[saleID] = stock
            return stock
        }
    }
}
