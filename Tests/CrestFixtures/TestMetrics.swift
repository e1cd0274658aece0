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
