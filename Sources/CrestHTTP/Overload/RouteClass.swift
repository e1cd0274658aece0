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

    /// The class of a request, from its method and path.
    package init(method: HTTPRequest.Method, path: Substring) {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        switch (method, segments.count) {
        case (_, 1) where ["healthz", "readyz", "metrics"].contains(segments[0]):
            self = .exempt
        case (.post, 4) where segments[0] == "v1" && segments[1] == "sales" && segments[3] == "orders",
            (.post, 5)
        where segments[0] == "v1" && segments[1] == "sales" && segments[3] == "orders"
            && segments[4] == "cancel",
            (.post, 4) where segments[0] == "v1" && segments[1] == "orders" && segments[3] == "cancel",
            (.post, 3) where segments[0] == "v1" && segments[1] == "webhooks" && segments[2] == "provider":
            self = .critical
        case (.get, 3) where segments[0] == "v1" && ["orders", "sales"].contains(segments[1]):
            self = .normal
        case (.get, _), (.head, _):
            self = .sheddable
        default:
            // Writes by operators (a sale, a webhook endpoint, a job retried): one thing each.
            self = .normal
        }
    }
}
