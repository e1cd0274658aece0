import CoreMetrics
import Prometheus

/// swift-metrics for Crest's `/metrics`: every series with a `# HELP` line saying what it
/// measures, buckets that suit Crest's latencies (sub-millisecond to seconds) and batch sizes, and
/// names Prometheus accepts (`.` becomes `_`).
///
/// swift-prometheus's own factory registers every metric without help text; this one looks the
/// help up in `MetricsCatalog` by name. Hummingbird's `hb.request.errors` is not exported: the
/// problem middleware turns every error into a response before metrics see it, so the series
/// only ever held zeros labelled with the status of a successful request (`error_type="200"`);
/// failed requests are `hb_requests` and `http_server_request_duration` by status code.
struct CrestMetricsFactory: MetricsFactory {
    let registry: PrometheusCollectorRegistry

    /// A request's or a stage's time. Between 2 and 100 ms, where a durable order's answer lives,
    /// no bound is more than 1.5× the one below it, and the latency targets a shop sets there (20
    /// ms for the provider's webhook, 100 ms for an answer in a crowd) are bounds of their own:
    /// `histogram_quantile` spreads a bucket's counts evenly, so a quantile read inside a bucket
    /// is only known to lie in it — with 10–25 and 25–50 ms, within 2.5× (Benchmarks/RESULTS.md).
    static let durationBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
        .milliseconds(3), .milliseconds(4), .milliseconds(5), .milliseconds(7.5), .milliseconds(10),
        .milliseconds(15), .milliseconds(20), .milliseconds(25), .milliseconds(35), .milliseconds(50),
        .milliseconds(75), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5),
        .seconds(5), .seconds(10),
    ]
    static let valueBuckets: [Double] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]

    /// Series that measure a life, not a request: an order's life after placement lasts up to its
    /// payment window (15 minutes by default, a day at most) and a webhook may come or go hours
    /// late after retries. With `durationBuckets` every such value past 10 s fell in `+Inf`, and
    /// any quantile of them read "10 s".
    static let lifetimes: Set<String> = [
        "crest_order_lifecycle_seconds", "crest_provider_webhook_lag_seconds", "crest_merchant_webhook_lag_seconds",
    ]
    static let lifetimeBuckets: [Duration] = [
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5),
        .seconds(10), .seconds(15), .seconds(30), .seconds(60), .seconds(120), .seconds(300), .seconds(600),
        .seconds(900), .seconds(1_800), .seconds(3_600), .seconds(7_200), .seconds(21_600), .seconds(86_400),
    ]

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        guard label != "hb.request.errors" else { return Unexported() }
        let (name, labels) = Self.sanitized(label, dimensions)
        return registry.makeCounter(descriptor: Self.descriptor(name), labels: labels)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        let (name, labels) = Self.sanitized(label, dimensions)
        return registry.makeCounter(descriptor: Self.descriptor(name), labels: labels)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        let (name, labels) = Self.sanitized(label, dimensions)
        guard aggregate else { return registry.makeGauge(descriptor: Self.descriptor(name), labels: labels) }
        return registry.makeValueHistogram(descriptor: Self.descriptor(name), labels: labels, buckets: Self.valueBuckets)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        let (name, labels) = Self.sanitized(label, dimensions)
        return registry.makeGauge(descriptor: Self.descriptor(name), labels: labels)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        let (name, labels) = Self.sanitized(label, dimensions)
        return registry.makeDurationHistogram(
            descriptor: Self.descriptor(name), labels: labels,
            buckets: Self.lifetimes.contains(name) ? Self.lifetimeBuckets : Self.durationBuckets)
    }

    func destroyCounter(_ handler: any CounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    func destroyRecorder(_ handler: any RecorderHandler) {
        switch handler {
        case let gauge as Prometheus.Gauge: registry.unregisterGauge(gauge)
        case let histogram as Prometheus.Histogram<Double>: registry.unregisterValueHistogram(histogram)
        default: break
        }
    }

    func destroyMeter(_ handler: any MeterHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
    }

    func destroyTimer(_ handler: any TimerHandler) {
        if let histogram = handler as? Prometheus.Histogram<Duration> { registry.unregisterDurationHistogram(histogram) }
    }

    /// The series' name with its help from the catalog.
    static func descriptor(_ name: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: MetricsCatalog.help(for: name))
    }

    /// The name and label names as Prometheus accepts them: ASCII letters, digits, `_` and `:`; any
    /// other byte becomes `_`. Libraries and Crest make a metric per event (Hummingbird's metrics
    /// middleware a counter and a timer per request, the job runner per run), so names are read as
    /// bytes and a clean one — all of Crest's — is returned as it is: by `Character` the factory
    /// took 2% of Crest's CPU over an order's lifecycle, 0.5% now (Benchmarks/RESULTS.md).
    static func sanitized(_ name: String, _ labels: [(String, String)]) -> (String, [(String, String)]) {
        let labels = labels.allSatisfy { $0.0.utf8.allSatisfy(isNameByte) } ? labels : labels.map { (clean($0.0), $0.1) }
        return (clean(name), labels)
    }

    private static func clean(_ text: String) -> String {
        if text.utf8.allSatisfy(isNameByte) { return text }
        return String(decoding: text.utf8.map { isNameByte($0) ? $0 : UInt8(ascii: "_") }, as: UTF8.self)
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "_"), UInt8(ascii: ":"):
            true
        default: false
        }
    }

    /// A counter that goes nowhere.
    private final class Unexported: CounterHandler, Sendable {
        func increment(by: Int64) {}
        func reset() {}
    }
}
