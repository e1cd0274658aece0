import CrestCore
import Crypto
import Foundation
import HTTPTypes
import Hummingbird

/// A request to an admin route without the right bearer token.
struct AdminAuthError: Error {}

/// The admin bearer token, kept as its SHA-256 digest.
///
/// Tokens are compared as digests, byte by byte without an early exit, so neither the length nor
/// the first differing byte of the token shows in response times.
struct AdminCredential: Sendable {
    private let expected: [UInt8]
    /// Whether the token has a dot, as a JWT has (a generated token never does).
    let looksLikeJWT: Bool

    init(token: String) {
        expected = Array(SHA256.hash(data: Data(token.utf8)))
        looksLikeJWT = Self.isJWTShaped(token)
    }

    /// Whether a token has a dot, as a JWT has (a generated admin token never does): a buyer pass
    /// to verify, where one without is no pass.
    static func isJWTShaped(_ token: some StringProtocol) -> Bool {
        token.utf8.contains(UInt8(ascii: "."))
    }

    func matches(_ presented: some StringProtocol) -> Bool {
        let digest = SHA256.hash(data: Data(presented.utf8))
        return ConstantTime.equal(digest, expected)
    }

    /// The token of an `Authorization: Bearer <token>` header; `nil` without one.
    static func bearerToken(of request: Request) -> Substring? {
        bearerToken(in: request.headers)
    }

    static func bearerToken(in headers: HTTPFields) -> Substring? {
        guard let header = headers[.authorization], header.hasPrefix("Bearer ") else { return nil }
        return header.dropFirst("Bearer ".count)
    }
}

/// Lets a request through only with `Authorization: Bearer <admin token>`.
struct AdminAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let credential: AdminCredential

    init(token: String) {
        credential = AdminCredential(token: token)
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        guard let token = AdminCredential.bearerToken(of: request), credential.matches(token) else {
            throw AdminAuthError()
        }
        return try await next(request, context)
    }
}
