import CrestHTTP
import Metrics
import Prometheus

/// The process-wide metrics registry of the tests (swift-metrics can be bootstrapped once per process).
public enum TestMetrics {
    public static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(CrestHTTPServer.metricsFactory(registry: registry))
        return registry
    }()
}

extension TestMetrics {
    /// The value of one series as `/metrics` shows it (`name{label="value",…}`, labels in the
    /// order they were given), or `nil` while it does not exist. Metrics are process-wide: compare
    /// a value with the one read before the step under test, or read a registry of the test's own.
    public static func value(of series: String, in registry: PrometheusCollectorRegistry = registry) -> Double? {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        for line in String(decoding: buffer, as: UTF8.self).split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }
}
