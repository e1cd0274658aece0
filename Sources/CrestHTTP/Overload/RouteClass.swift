import HTTPTypes
import Hummingbird

/// What a route is worth under load: the core flow (reserve → order → pay) keeps its capacity by
/// sacrificing the rest first.
package enum RouteClass: String, Sendable, CaseIterable {
    /// Health, readiness and metrics: never shed (a node that hides its state under load is
    /// taken out of service or flown blind).
    case exempt
    /// Placing and cancelling orders, the provider's webhooks: refused last, and only by the
    /// write path's own limit.
    case critical
    /// Reading one order or one sale; the operators' changes to one thing.
    case normal
    /// Lists, event histories, job administration, pages: refused first.
    case sheddable

    /// The class of a request, from its method and path. Every request is classed: this reads
    /// the path's bytes in place, without splitting it.
    package init(method: HTTPRequest.Method, path: Substring) {
        var segments: [Substring] = []
        segments.reserveCapacity(5)
        var rest = path.drop(while: { $0 == "/" })
        while !rest.isEmpty, segments.count < 6 {
            let end = rest.firstIndex(of: "/") ?? rest.endIndex
            segments.append(rest[..<end])
            rest = rest[end...].drop(while: { $0 == "/" })
        }
        self = Self.classify(method: method, segments: segments, more: !rest.isEmpty)
    }

    private static func classify(method: HTTPRequest.Method, segments: [Substring], more: Bool) -> RouteClass {
        guard !more else { return method == .get || method == .head ? .sheddable : .normal }
        switch (method, segments.count) {
        case (_, 1) where segments[0] == "healthz" || segments[0] == "readyz" || segments[0] == "metrics":
            return .exempt
        case (.post, 4) where segments[0] == "v1" && segments[1] == "sales" && segments[3] == "orders",
            (.post, 5)
        where segments[0] == "v1" && segments[1] == "sales" && segments[3] == "orders"
            && segments[4] == "cancel",
            (.post, 4) where segments[0] == "v1" && segments[1] == "orders" && segments[3] == "cancel",
            (.post, 3) where segments[0] == "v1" && segments[1] == "webhooks" && segments[2] == "provider":
            return .critical
        case (.get, 3) where segments[0] == "v1" && (segments[1] == "orders" || segments[1] == "sales"):
            return .normal
        case (.get, _), (.head, _):
            return .sheddable
        default:
            // Writes by operators (a sale, a webhook endpoint, a job retried): one thing each.
            return .normal
        }
    }
}
