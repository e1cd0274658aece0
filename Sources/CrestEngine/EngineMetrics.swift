import CoreMetrics
import CrestCore
import Foundation
import Metrics
import Synchronization

/// The engine's metrics, through swift-metrics (exported for Prometheus by the executable).
package struct EngineMetrics: Sendable {
    static let batchSizeLabel = "crest_batch_size"
    static let commitDurationLabel = "crest_batch_commit_duration_seconds"

    private let batchSize = Recorder(label: batchSizeLabel)
    private let commitDuration = Timer(label: commitDurationLabel, preferredDisplayUnit: .seconds)
    private let commitFailures = Counter(label: "crest_batch_commit_failures_total")

    func recordCommit(size: Int, duration: Duration) {
        batchSize.record(size)
        commitDuration.record(duration: duration)
    }

    /// Where placing an order spends its time, one histogram series per stage
    /// (`crest_order_stage_seconds{stage}`), each observed once per order that passes it.
    package enum PlacementStage: String, CaseIterable, Sendable {
        /// The HTTP handler's checks before the engine: rate limits, risk rules, the buyer pass, the body.
        case admission
        /// Waiting for a place on a full write path (only when the adaptive limit is on).
        case writePath = "write_path"
        /// The stock gate's decision: the sale's gate, the key's lookup, the admission.
        case gate
        /// From handing the reservation to the batcher to its batch's commit starting.
        case batchWait = "batch_wait"
        /// The commit of the order's batch.
        case commit
        /// From the engine's answer to the HTTP answer built (status, headers, encoded body).
        case answer
    }

    static let stageLabel = "crest_order_stage_seconds"

    private let stages = Self.timers(stageLabel, PlacementStage.allCases)

    func record(_ stage: PlacementStage, _ duration: Duration) {
        stages[stage]?.record(duration: duration)
    }

    /// An order's life after placement, from its creation (`crest_order_lifecycle_seconds{stage}`):
    /// its payment created at the provider, paid (stock sold in the same transaction), refunded,
    /// cancelled, expired; and how late an expiry ran past the payment window (`expiry_late`).
    package enum LifecycleStage: String, CaseIterable, Sendable {
        case paymentCreated = "payment_created"
        case paid, refunded, cancelled, expired
        case expiryLate = "expiry_late"
    }

    static let lifecycleLabel = "crest_order_lifecycle_seconds"

    private let lifecycle = Self.timers(lifecycleLabel, LifecycleStage.allCases)

    func record(_ stage: LifecycleStage, seconds: TimeInterval) {
        lifecycle[stage]?.record(duration: .seconds(max(0, seconds)))
    }

    /// One histogram series per stage, made once (the order path only looks its timer up).
    private static func timers<Stage: RawRepresentable<String> & Hashable>(_ label: String, _ stages: [Stage]) -> [Stage: Timer] {
        Dictionary(
            uniqueKeysWithValues: stages.map {
                ($0, Timer(label: label, dimensions: [("stage", $0.rawValue)], preferredDisplayUnit: .seconds))
            })
    }

    /// The stages a committed change of `order` reached, at `now`.
    func recordChange(of order: Order, at now: Date) {
        let age = now.timeIntervalSince(order.createdAt)
        switch order.status {
        case .paid: record(.paid, seconds: age)
        case .refunded: record(.refunded, seconds: age)
        case .cancelled: record(.cancelled, seconds: age)
        case .expired:
            record(.expired, seconds: age)
            record(.expiryLate, seconds: now.timeIntervalSince(order.expiresAt))
        case .pendingPayment: break
        }
    }

    /// Provider webhooks: from the provider's event time to Crest receiving it.
    private let providerWebhookLag = Timer(label: "crest_provider_webhook_lag_seconds", preferredDisplayUnit: .seconds)

    func recordProviderWebhookLag(seconds: TimeInterval) {
        providerWebhookLag.record(duration: .seconds(max(0, seconds)))
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
        "payment_window_closed",
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
        case .paymentWindowClosed: "payment_window_closed"
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
