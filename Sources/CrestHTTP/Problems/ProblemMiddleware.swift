import Hummingbird
import Logging
import Metrics
import Synchronization

/// Turns every error thrown below it into an `application/problem+json` response.
///
/// Added innermost, so that the metrics and tracing middleware around it see responses with
/// their real status instead of errors. An error no mapping knows is logged and answered 500
/// without its internals.
///
/// A request that found no route, on a path that a route takes with other methods, is answered
/// `405` with `Allow`.
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    let allowedMethods: AllowedMethods

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            // Hummingbird's answer when no route took the path and method.
            let allowed = allowedMethods.methods(for: request.uri.path)
            guard !allowed.isEmpty else { return answer(Problem.from(status: .notFound), to: request) }
            var problem = Problem.from(status: .methodNotAllowed)
            problem.detail = "\(request.method) is not allowed here; allowed: \(allowed.map(\.rawValue).joined(separator: ", "))"
            problem.headers[.allow] = allowed.map(\.rawValue).joined(separator: ", ")
            return answer(problem, to: request)
        } catch {
            let problem =
                Problem.from(error)
                ?? {
                    context.logger.error("unhandled error", metadata: ["error": "\(String(reflecting: error))"])
                    return Problem(kind: "internal", title: "Internal error", status: .internalServerError)
                }()
            return answer(problem, to: request)
        }
    }

    /// Every problem is answered here, and counted by kind.
    private func answer(_ problem: Problem, to request: Request) -> Response {
        ProblemCounts.shared.count(problem.kind)
        return problem.response(instance: request.uri.path)
    }
}

/// Problems answered, by kind (`crest_problems_total{type}`, the last part of the problem's type):
/// errors and refusals by what they were. One counter per kind, made once.
final class ProblemCounts: Sendable {
    static let shared = ProblemCounts()
    static let label = "crest_problems_total"

    private let counters = Mutex<[String: Counter]>([:])

    func count(_ kind: String) {
        counters.withLock { counters in
            if let counter = counters[kind] { return counter }
            let counter = Counter(label: Self.label, dimensions: [("type", kind)])
            counters[kind] = counter
            return counter
        }.increment()
    }
}
