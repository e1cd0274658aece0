import CrestEngine
import Hummingbird
import Metrics

/// When minor routes give way to the core flow.
package struct SheddingConfiguration: Sendable, Hashable {
    /// Event-loop or task-pool lag past this sheds sheddable routes; past twice this, normal ones too.
    package var lagThreshold: Duration = .milliseconds(50)
    /// How long a shed route's client is told to wait.
    package var retryAfterSeconds = 2

    package init() {}

    /// Nothing is shed.
    package static let off: SheddingConfiguration? = nil
}

/// How hard Crest is pressed now, from the write path's limit and the measured lag.
package enum Pressure: Int, Sendable, Comparable {
    case none
    /// The write path is full, or work starts late: sheddable routes are refused.
    case elevated
    /// The write path refuses attempts, or work starts very late: normal routes are refused too.
    case high

    package static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    /// Whether a route of `routeClass` is refused at this pressure. Critical routes never are here:
    /// the write path's own limit is what refuses an order attempt.
    func sheds(_ routeClass: RouteClass) -> Bool {
        switch routeClass {
        case .exempt, .critical: false
        case .normal: self >= .high
        case .sheddable: self >= .elevated
        }
    }
}

/// A request refused to keep capacity for the core flow: `503 shed` with `Retry-After`.
struct Shed: Error, Sendable, Hashable {
    var routeClass: RouteClass
    var retryAfterSeconds: Int
}

/// Refuses minor routes first under pressure (`RouteClass`, `Pressure`), before their handlers
/// run: a shed request costs a path split and a comparison.
package struct LoadShedder<Context: RequestContext>: RouterMiddleware {
    private let configuration: SheddingConfiguration
    private let pressure: @Sendable () -> Pressure
    private let refusals: [RouteClass: Counter] = Dictionary(
        uniqueKeysWithValues: [RouteClass.normal, .sheddable].map {
            ($0, Counter(label: "crest_shed_total", dimensions: [("class", $0.rawValue)]))
        })

    /// `pressure`: how pressed Crest is now (`LoadShedder.pressure(writePath:lag:configuration:)`
    /// in production; tests give their own).
    package init(configuration: SheddingConfiguration, pressure: @escaping @Sendable () -> Pressure) {
        self.configuration = configuration
        self.pressure = pressure
    }

    /// The pressure from the write path's limit and the lag monitor.
    package static func pressure(
        writePath: WritePathLimit?, lag: LagMonitor?, configuration: SheddingConfiguration
    ) -> @Sendable () -> Pressure {
        {
            let lagged = lag?.lag ?? .zero
            let fromLag: Pressure =
                lagged >= configuration.lagThreshold * 2 ? .high : lagged >= configuration.lagThreshold ? .elevated : .none
            let fromWritePath: Pressure
            switch writePath?.pressure ?? WritePathPressure.none {
            case .none: fromWritePath = .none
            case .saturated: fromWritePath = .elevated
            case .refusing: fromWritePath = .high
            }
            return max(fromLag, fromWritePath)
        }
    }

    package func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let routeClass = RouteClass(method: request.method, path: Substring(request.uri.path))
        if routeClass == .normal || routeClass == .sheddable, pressure().sheds(routeClass) {
            refusals[routeClass]?.increment()
            throw Shed(routeClass: routeClass, retryAfterSeconds: configuration.retryAfterSeconds)
        }
        return try await next(request, context)
    }
}
