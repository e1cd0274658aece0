import HTTPTypes
import Hummingbird

/// What a route is worth under load: the core flow (reserve → order → pay) keeps its capacity by
/// sacrificing the rest first.
package enum RouteClass: String, Sendable, CaseIterable {
    /// Health, readiness and metrics: never shed (a node that hides its state under load is
    /// taken out of service or flown blind).
    case exempt
    /// Placing, paying (the checkout) and cancelling orders, the provider's webhooks: refused
    /// last, and only by the write path's own limit.
    case critical
    /// Reading one order or one sale; the operators' changes to one thing.
    case normal
    /// Lists, event histories, job administration, pages: refused first.
    case sheddable

    /// The class of a request, from its method and path. Every request is classed: this reads
    /// the path's bytes in place, without splitting it or comparing `Character`s (which cost 2.4%
    /// of the server's CPU on a sold-out sale's refusals).
    package init(method: HTTPRequest.Method, path: Substring) {
        let slash = UInt8(ascii: "/")
        var segments: [Segment] = []
        segments.reserveCapacity(5)
        var rest = path.utf8.drop(while: { $0 == slash })
        while !rest.isEmpty, segments.count < 6 {
            let end = rest.firstIndex(of: slash) ?? rest.endIndex
            segments.append(rest[..<end])
            rest = rest[end...].drop(while: { $0 == slash })
        }
        self = Self.classify(method: method, segments: segments, more: !rest.isEmpty)
    }

    /// A path segment's bytes.
    private typealias Segment = Substring.UTF8View

    private static func classify(method: HTTPRequest.Method, segments: [Segment], more: Bool) -> RouteClass {
        guard !more else { return method == .get || method == .head ? .sheddable : .normal }
        func at(_ index: Int, is text: String) -> Bool { segments[index].elementsEqual(text.utf8) }
        switch (method, segments.count) {
        case (_, 1) where at(0, is: "healthz") || at(0, is: "readyz") || at(0, is: "metrics"):
            return .exempt
        case (.post, 4) where at(0, is: "v1") && at(1, is: "sales") && at(3, is: "orders"),
            (.post, 5) where at(0, is: "v1") && at(1, is: "sales") && at(3, is: "orders") && at(4, is: "cancel"),
            (.post, 4) where at(0, is: "v1") && at(1, is: "orders") && (at(3, is: "cancel") || at(3, is: "payment")),
            (.post, 3) where at(0, is: "v1") && at(1, is: "webhooks") && at(2, is: "provider"):
            return .critical
        case (.get, 3) where at(0, is: "v1") && (at(1, is: "orders") || at(1, is: "sales")):
            return .normal
        case (.get, _), (.head, _):
            return .sheddable
        default:
            // Writes by operators (a sale, a webhook endpoint, a job retried): one thing each.
            return .normal
        }
    }
}
