import CrestEngine
import Hummingbird
import Logging
import Prometheus

/// Builds Crest's HTTP API around an engine.
///
/// ```swift
/// let router = CrestHTTPServer.router(engine: engine, adminToken: token, metrics: registry)
/// let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 8080)))
/// ```
public enum CrestHTTPServer {
    /// The router with every route and middleware. Middleware order, outside in: metrics, tracing,
    /// problem details — so errors are responses before metrics and traces see them.
    /// `providerWebhookSecret` checks the signatures of the payment provider's webhooks; without
    /// it, `POST /v1/webhooks/provider` answers 503.
    public static func router(
        engine: Engine, adminToken: String, metrics: PrometheusCollectorRegistry, providerWebhookSecret: String? = nil
    ) -> Router<CrestRequestContext> {
        let router = Router(context: CrestRequestContext.self)
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: TracingMiddleware())
        let allowedMethods = AllowedMethods()
        router.add(middleware: ProblemMiddleware(allowedMethods: allowedMethods))
        OperationsRoutes(engine: engine, metrics: metrics).add(to: router)
        let admin = AdminAuthMiddleware<CrestRequestContext>(token: adminToken)
        SaleRoutes(engine: engine).add(to: router, admin: admin)
        OrderRoutes(engine: engine).add(to: router, admin: admin)
        JobRoutes(engine: engine).add(to: router, admin: admin)
        PaymentRoutes(
            engine: engine, webhookSecret: providerWebhookSecret,
            refusals: WebhookRefusals(logger: Logger(label: "crest.webhooks"))
        ).add(to: router, admin: admin)
        WebhookEndpointRoutes(engine: engine).add(to: router, admin: admin)
        allowedMethods.load(router)
        return router
    }

    /// The buckets that suit Crest's latencies (sub-millisecond to seconds) and batch sizes,
    /// and names that Prometheus accepts (`.` becomes `_`).
    public static func metricsFactory(registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
        ]
        factory.defaultValueHistogramBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
        factory.nameAndLabelSanitizer = { name, labels in
            func clean(_ text: String) -> String {
                String(text.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" ? $0 : "_" })
            }
            return (clean(name), labels.map { (clean($0.0), $0.1) })
        }
        return factory
    }
}
