import CoreMetrics
import CrestCore
import CrestEngine
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import Prometheus

/// Builds Crest's HTTP API around an engine.
///
/// ```swift
/// let router = CrestHTTPServer.router(
///     engine: engine, adminToken: token, buyerAuthentication: .passes(verifier), metrics: registry)
/// let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 8080)))
/// ```
package enum CrestHTTPServer {
    /// The `Server` header of Crest's answers: the applications' `serverName`, and what the
    /// channel's own answers carry (`ChannelOrders`).
    package static let serverName = "crest"

    /// The router with every route and middleware. Middleware order, outside in: metrics, tracing,
    /// problem details — so errors are responses before metrics and traces see them.
    /// `buyerAuthentication` says how buyer routes know the buyer (`BuyerAuthentication`).
    /// `providerWebhookSecret` checks the signatures of the payment provider's webhooks; without
    /// it, `POST /v1/webhooks/provider` answers 503. `shedding`: when minor routes give way under
    /// pressure (the engine's write-path limit and `lag`); `nil`: never. `tracing`: a server span
    /// per request (and the caller's trace context taken in) — off where no tracer is bootstrapped,
    /// since the middleware builds every span's attributes even for the no-op tracer (2–4% of a
    /// request's CPU under a crowd). `limiter`: the order routes' rate limiter, when the channel
    /// shares it (`server(admission:)`); made from `admission` when `nil`. `risk`: the order routes'
    /// risk rules, when the channel shares them; made here when `nil`.
    package static func router(
        engine: Engine, adminToken: String, buyerAuthentication: BuyerAuthentication,
        admission: AdmissionLimits = AdmissionLimits(), clock: any CrestClock = SystemClock(),
        shedding: SheddingConfiguration? = nil, lag: LagMonitor? = nil,
        metrics: PrometheusCollectorRegistry, providerWebhookSecret: String? = nil, tracing: Bool = true,
        limiter: RateLimiter? = nil, risk: RiskGate? = nil
    ) -> Router<CrestRequestContext> {
        let router = Router(context: CrestRequestContext.self)
        router.add(middleware: MetricsMiddleware())
        if tracing { router.add(middleware: TracingMiddleware()) }
        let allowedMethods = AllowedMethods()
        router.add(middleware: ProblemMiddleware(allowedMethods: allowedMethods))
        if let shedding {
            router.add(
                middleware: LoadShedder(
                    configuration: shedding,
                    pressure: LoadShedder<CrestRequestContext>.pressure(
                        writePath: engine.writePath, lag: lag, configuration: shedding)))
        }
        OperationsRoutes(engine: engine, metrics: metrics, readings: ScrapeReadings(engine: engine)).add(to: router)
        let admin = AdminAuthMiddleware<CrestRequestContext>(token: adminToken)
        SaleRoutes(engine: engine).add(to: router, admin: admin)
        let callers = CallerIdentification(admin: admin.credential, authentication: buyerAuthentication)
        let risk = risk ?? RiskGate(engine: engine, clock: clock, trackedKeys: admission.trackedKeys)
        OrderRoutes(engine: engine, callers: callers, limiter: limiter ?? RateLimiter(limits: admission, clock: clock), risk: risk)
            .add(to: router, admin: admin)
        RiskRuleRoutes(engine: engine, gate: risk).add(to: router, admin: admin)
        JobRoutes(engine: engine).add(to: router, admin: admin)
        EventFeedRoutes(engine: engine).add(to: router, admin: admin)
        DashboardRoutes().add(to: router)
        AuditRoutes(engine: engine).add(to: router, admin: admin)
        ReconciliationRoutes(engine: engine).add(to: router, admin: admin)
        PaymentRoutes(
            engine: engine, webhookSecret: providerWebhookSecret,
            refusals: WebhookRefusals(logger: Logger(label: "crest.webhooks"))
        ).add(to: router, admin: admin)
        WebhookEndpointRoutes(engine: engine).add(to: router, admin: admin)
        allowedMethods.load(router)
        return router
    }

    /// HTTP/1.1 with `limits` on connections: the cap on open ones, the time to send a request's
    /// head and body (`ConnectionGuard`) and the idle time of a kept-alive connection; with
    /// `writePath`, order attempts are refused in the channel while it is full, and with
    /// `admission` while over a rate limit or refused by the stock gate as far as the channel can tell (`ChannelOrders`).
    package static func server(
        limits: ConnectionLimits, connections: OpenConnections = OpenConnections(), writePath: WritePathLimit? = nil,
        admission: ChannelAdmission? = nil
    ) -> HTTPServerBuilder {
        let refusing = writePath != nil || admission != nil
        let mailboxes = LoopMailboxes()
        return .http1(
            configuration: .init(
                additionalChannelHandlers: [ConnectionGuard(limits: limits, connections: connections)]
                    + (refusing ? [ChannelOrders(writePath: writePath, admission: admission, mailboxes: mailboxes)] : []),
                idleTimeout: TimeAmount(limits.idleTimeout)))
    }

    /// How many connections one read of a listening socket accepts. NIO accepts 4 per read, and a
    /// listener's event loop reads its socket once per turn — a turn that, in a crowd, also serves
    /// hundreds of busy connections and lasts tens of milliseconds. A crowd that opens its
    /// connections at once then waited seconds in the kernel's accept queue for its first answer
    /// (1,500 connections: 3.7–5.9 s; RESULTS.md, "The accept queue"). 256 empties a full backlog
    /// of 4,096 in 16 turns.
    package static let acceptBurst: UInt = 256

    /// `onServerRunning` for a Crest listener: `acceptBurst` connections accepted per read of the
    /// listening socket, then `running` (e.g. saying where it listens).
    package static func whenListening(
        _ running: @escaping @Sendable (any Channel) async -> Void
    ) -> @Sendable (any Channel) async -> Void {
        { channel in
            // Fails only for a channel already closed: nothing to accept then.
            try? await channel.setOption(ChannelOptions.maxMessagesPerRead, value: acceptBurst).get()
            await running(channel)
        }
    }

    /// The factory to bootstrap swift-metrics with, for `/metrics` (see `CrestMetricsFactory`).
    package static func metricsFactory(registry: PrometheusCollectorRegistry) -> any MetricsFactory {
        CrestMetricsFactory(registry: registry)
    }
}
