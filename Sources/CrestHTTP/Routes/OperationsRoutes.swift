import CrestCore
import CrestEngine
import HTTPTypes
import Hummingbird
import NIOCore
import Prometheus

/// Liveness, readiness and the Prometheus scrape endpoint.
struct OperationsRoutes {
    struct Status: ResponseEncodable {
        var status: String
    }

    let engine: Engine
    let metrics: PrometheusCollectorRegistry

    func add(to router: Router<CrestRequestContext>) {
        router.get("healthz") { _, _ in Status(status: "ok") }
        router.get("readyz") { _, _ -> Status in
            guard await engine.isReady() else {
                throw UnavailableError(reason: "the store does not answer")
            }
            return Status(status: "ready")
        }
        router.get("metrics") { _, _ -> Response in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: metrics.emitToBuffer())))
        }
    }
}
