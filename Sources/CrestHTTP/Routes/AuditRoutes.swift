import CrestEngine
import CrestStore
import Hummingbird

/// `GET /v1/audit` (admin): every promise checked on the store's data now, as `crest audit` does.
/// `200` with `passed: false` when one is broken: the audit answered; what it found is the body.
struct AuditRoutes {
    let engine: Engine

    func add(to router: Router<CrestRequestContext>, admin: AdminAuthMiddleware<CrestRequestContext>) {
        router.group("v1/audit")
            .add(middleware: admin)
            .get { _, _ in try await engine.audit() }
    }
}

extension AuditReport: ResponseEncodable {}
