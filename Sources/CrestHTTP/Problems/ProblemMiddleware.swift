import Hummingbird
import Logging

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
            guard !allowed.isEmpty else { return Problem.from(status: .notFound).response(instance: request.uri.path) }
            var problem = Problem.from(status: .methodNotAllowed)
            problem.detail = "\(request.method) is not allowed here; allowed: \(allowed.map(\.rawValue).joined(separator: ", "))"
            problem.headers["Allow"] = allowed.map(\.rawValue).joined(separator: ", ")
            return problem.response(instance: request.uri.path)
        } catch {
            let problem =
                Problem.from(error)
                ?? {
                    context.logger.error("unhandled error", metadata: ["error": "\(String(reflecting: error))"])
                    return Problem(kind: "internal", title: "Internal error", status: .internalServerError)
                }()
            return problem.response(instance: request.uri.path)
        }
    }
}
