import Hummingbird
import Logging

/// Turns every error thrown below it into an `application/problem+json` response.
///
/// Added innermost, so that the metrics and tracing middleware around it see responses with
/// their real status instead of errors. An error no mapping knows is logged and answered 500
/// without its internals.
struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
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
