import ArgumentParser
import Foundation
import Logging
import OTel
import ServiceLifecycle
import Tracing

/// Where Crest's spans go: the engine's stages (order placement, the wait for a batch, the batch's
/// commit, every job run), the HTTP server's spans (one per request, continuing the caller's W3C
/// `traceparent`), and the outbound calls to the payment provider and to merchants' webhook
/// endpoints (each sending its own `traceparent`).
///
/// Off unless an OTLP endpoint is named: by `--otlp-endpoint` (OTLP/HTTP base URL, spans posted to
/// `<URL>/v1/traces`) or by the OpenTelemetry SDK's own variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_TRACES_EXPORTER`). Every other `OTEL_*` variable the
/// SDK defines applies as usual: `OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`,
/// the default, or `http/json`), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER`,
/// `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_SDK_DISABLED`, … As the SDK applies them over the configuration
/// it is given, an `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` that is set wins over `--otlp-endpoint`.
struct TracingSettings {
    /// The OTLP/HTTP URL spans are posted to, when given by `--otlp-endpoint`.
    var tracesEndpoint: String?
    var enabled: Bool

    static let sdkVariables = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"]

    /// `endpoint` is the base URL given by `--otlp-endpoint` or `CREST_OTLP_ENDPOINT`.
    init(endpoint: String?, environment: [String: String]) throws {
        if let endpoint {
            guard let url = URL(string: endpoint), let scheme = url.scheme?.lowercased(),
                scheme == "http" || scheme == "https", url.host() != nil
            else {
                throw ValidationError("--otlp-endpoint must be an http or https URL, e.g. http://127.0.0.1:4318")
            }
            tracesEndpoint = (endpoint.hasSuffix("/") ? endpoint : endpoint + "/") + "v1/traces"
        }
        let disabled =
            environment["OTEL_SDK_DISABLED"]?.lowercased() == "true"
            || environment["OTEL_TRACES_EXPORTER"]?.lowercased() == "none"
        enabled = !disabled && (tracesEndpoint != nil || Self.sdkVariables.contains { environment[$0] != nil })
    }

    /// The SDK's configuration: traces only (metrics stay Prometheus at `/metrics`, logs stay on
    /// standard error), OTLP/HTTP, the SDK's diagnostics through Crest's logger.
    func configuration(logger: Logger) -> OTel.Configuration {
        var configuration = OTel.Configuration.default
        configuration.serviceName = "crest"
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        configuration.traces.enabled = true
        configuration.traces.exporter = .otlp
        configuration.traces.otlpExporter.protocol = .httpProtobuf
        if let tracesEndpoint { configuration.traces.otlpExporter.endpoint = tracesEndpoint }
        configuration.diagnosticLogger = .custom(logger)
        return configuration
    }

    /// Bootstraps the process's tracer (once per process) and returns the service that batches and
    /// sends the spans — to run in the service group, so that it sends what is left on shutdown.
    /// `nil` when tracing is off: spans go to the no-op tracer and cost next to nothing.
    func bootstrap(logger: Logger) throws -> (any Service)? {
        guard enabled else { return nil }
        let backend: (factory: any Tracer, service: any Service)
        do {
            backend = try OTel.makeTracingBackend(configuration: configuration(logger: logger))
        } catch {
            throw ValidationError("cannot export traces: \(error)")
        }
        InstrumentationSystem.bootstrap(backend.factory)
        return backend.service
    }
}
