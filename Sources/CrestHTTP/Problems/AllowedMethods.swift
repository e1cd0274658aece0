import HTTPTypes
import Hummingbird
import Synchronization

/// The methods each route takes, so that a known path asked with a method it does not take is
/// answered `405 Method Not Allowed` with an `Allow` header (RFC 9110 §15.5.6) instead of
/// Hummingbird's `404` — a client that sent `PUT` where `POST` was meant learns that the path is
/// right.
///
/// Filled once, after every route was added (`load(_:)`); read by `ProblemMiddleware` for each
/// request that found no route.
final class AllowedMethods: Sendable {
    private struct Route: Sendable {
        /// Literal segments, and `nil` where the route captures a parameter.
        var segments: [Substring?]
        var methods: [HTTPRequest.Method]
    }

    private let routes = Mutex<[Route]>([])

    /// Learns the routes of `router`: paths made of literal segments and `{parameter}` captures.
    func load<Context>(_ router: Router<Context>) {
        var byPath: [String: Route] = [:]
        for route in router.routes {
            let path = route.path.description
            var entry = byPath[path] ?? Route(segments: Self.pattern(path), methods: [])
            entry.methods.append(route.method)
            byPath[path] = entry
        }
        routes.withLock { $0 = Array(byPath.values) }
    }

    /// The methods a route at `path` takes, in a stable order; empty when no route has this path.
    func methods(for path: String) -> [HTTPRequest.Method] {
        let segments = path.split(separator: "/")
        let methods = routes.withLock { routes in
            routes.filter { Self.matches($0.segments, segments) }.flatMap(\.methods)
        }
        return Array(Set(methods)).sorted { $0.rawValue < $1.rawValue }
    }

    private static func pattern(_ path: String) -> [Substring?] {
        path.split(separator: "/").map { segment in
            segment.hasPrefix("{") || segment.hasPrefix(":") || segment == "*" ? nil : segment
        }
    }

    private static func matches(_ pattern: [Substring?], _ segments: [Substring]) -> Bool {
        guard pattern.count == segments.count else { return false }
        return zip(pattern, segments).allSatisfy { literal, segment in literal.map { $0 == segment } ?? true }
    }
}
