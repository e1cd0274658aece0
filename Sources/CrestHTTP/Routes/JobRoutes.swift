import CrestCore
import CrestEngine
import CrestStore
import Hummingbird

/// `/v1/jobs`: operators look at the job queue and retry discarded jobs (admin token).
struct JobRoutes {
    let engine: Engine

    func add(to router: Router<CrestRequestContext>, admin: AdminAuthMiddleware<CrestRequestContext>) {
        router.group("v1/jobs")
            .add(middleware: admin)
            .get(use: list)
            .get("{jobID}", use: show)
            .post("{jobID}/retry", use: retry)
    }

    /// `GET /v1/jobs?state=…&kind=…`: jobs in id order.
    @Sendable func list(_ request: Request, context: CrestRequestContext) async throws -> JobPageBody {
        var issues: [ValidationError.Issue] = []
        let query = PageQuery(request, cursor: JobID.init, cursorMeaning: "a job id", issues: &issues)
        var filter = JobFilter()
        filter.state = request.enumQuery("state", as: Job.State.self, issues: &issues)
        if let kind = request.uri.queryParameters["kind"] {
            if kind.isEmpty || kind.count > 100 {
                issues.append(.init(field: "kind", message: "must be 1 to 100 characters"))
            } else {
                filter.kind = String(kind)
            }
        }
        guard issues.isEmpty else { throw ValidationError(issues: issues) }
        let page = query.page(
            try await engine.jobs(matching: filter, after: query.after, limit: query.limit + 1), cursor: \.id)
        return JobPageBody(jobs: page.items.map(JobBody.init), next: page.next)
    }

    @Sendable func show(_ request: Request, context: CrestRequestContext) async throws -> JobBody {
        JobBody(try await engine.job(try context.jobID()))
    }

    /// Makes a discarded job run again now (with one more attempt).
    @Sendable func retry(_ request: Request, context: CrestRequestContext) async throws -> JobBody {
        JobBody(try await engine.retryJob(try context.jobID()))
    }
}

extension CrestRequestContext {
    /// The `{jobID}` path parameter; an id that cannot exist is an unknown job.
    func jobID() throws -> JobID {
        guard let raw = parameters.get("jobID"), let id = JobID(raw) else { throw JobError.jobNotFound }
        return id
    }
}
