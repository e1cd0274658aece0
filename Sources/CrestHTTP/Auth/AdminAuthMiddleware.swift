import Crypto
import Foundation
import HTTPTypes
import Hummingbird

/// A request to an admin route without the right bearer token.
struct AdminAuthError: Error {}

/// Lets a request through only with `Authorization: Bearer <admin token>`.
///
/// Tokens are compared as SHA-256 digests, byte by byte without an early exit, so neither the
/// length nor the first differing byte of the token shows in response times.
struct AdminAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    private let expected: [UInt8]

    init(token: String) {
        expected = Array(SHA256.hash(data: Data(token.utf8)))
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw AdminAuthError()
        }
        let presented = Array(SHA256.hash(data: Data(header.dropFirst("Bearer ".count).utf8)))
        let difference = zip(presented, expected).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) }
        guard difference == 0 else { throw AdminAuthError() }
        return try await next(request, context)
    }
}
