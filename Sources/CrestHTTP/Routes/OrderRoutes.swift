import CrestCore
import CrestEngine
import CrestIdentity
import CrestStore
import HTTPTypes
import Hummingbird

extension HTTPField.Name {
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
    static let idempotentReplayed = HTTPField.Name("Idempotent-Replayed")!
}

/// Buyers place orders on a sale, read them and their events, and cancel them while they await
/// payment; operators list them.
///
/// With buyer passes on, the buyer is the pass's subject, and an order is visible only to its
/// buyer and to operators: to anyone else it does not exist (`404`, so an order id does not
/// reveal that the order exists).
struct OrderRoutes {
    let engine: Engine
    let callers: CallerIdentification
    let limiter: RateLimiter
    let risk: RiskGate

    func add(to router: Router<CrestRequestContext>, admin: AdminAuthMiddleware<CrestRequestContext>) {
        router.post("v1/sales/{saleID}/orders", use: place)
        router.post("v1/sales/{saleID}/orders/cancel", use: cancelAttempt)
        router.get("v1/orders/{orderID}", use: show)
        router.get("v1/orders/{orderID}/events", use: events)
        router.post("v1/orders/{orderID}/cancel", use: cancel)
        router.post("v1/orders/{orderID}/payment", use: checkout)
        router.group("v1/orders")
            .add(middleware: admin)
            .get(use: list)
            .get("{orderID}/timeline", use: timeline)
    }

    /// `201` with the order once its reservation is durable; a replayed key answers `201` with the
    /// same order and `Idempotent-Replayed: true`.
    @Sendable func place(_ request: Request, context: CrestRequestContext) async throws -> Response {
        let arrived = ContinuousClock.now
        // A full write path refuses first: a crowd's refusal must cost less than its order.
        try engine.writePath?.refuseIfFull()
        let saleID = try context.saleID()
        guard let key = request.headers[.idempotencyKey] else {
            throw ValidationError(field: "Idempotency-Key", message: "header is required")
        }
        let address = limiter.clientAddress(of: request, peer: context.peer?.ipAddress)
        try limiter.check(address: address)
        try await risk.check(address: address)
        let caller = try await callers.caller(of: request)
        let buffer = try await request.collectJSONBody(context: context)
        let body =
            try PlaceOrderBody(plainJSON: buffer)
            ?? Request.decodeJSON(as: PlaceOrderBody.self, from: buffer, context: context)
        let buyer: String
        var limit: Int?
        switch caller {
        case .buyer(let pass):
            guard pass.admits(saleID) else { throw BuyerForbidden.saleNotAdmitted }
            if let named = body.buyer, named != pass.buyer { throw BuyerForbidden.buyerMismatch }
            buyer = pass.buyer
            limit = pass.perBuyerLimit
        case .operator:
            throw BuyerForbidden.operatorCannotOrder
        case .anyone:
            guard let named = body.buyer else { throw ValidationError(field: "buyer", message: "is required") }
            buyer = named
        }
        try await risk.check(buyer: buyer, key: key)
        let headers = try limiter.check(buyer: buyer, sale: saleID, overrides: try await engine.limits(of: saleID))
        engine.recordPlacement(.admission, ContinuousClock.now - arrived)
        let placed = try await engine.placeOrder(
            OrderRequest(
                saleID: saleID, idempotencyKey: key, buyer: buyer, quantity: body.quantity, perBuyerLimit: limit))
        let answering = ContinuousClock.now
        var response = try OrderBody(placed.order).response(from: request, context: context)
        response.status = .created
        response.headers.append(contentsOf: headers)
        response.headers[.location] = "/v1/orders/\(placed.order.id)"
        if placed.replayed { response.headers[.idempotentReplayed] = "true" }
        engine.recordPlacement(.answer, ContinuousClock.now - answering)
        return response
    }

    /// `GET /v1/orders/{id}`; with `?wait=N`, an order that awaits payment and has no payment yet
    /// is answered once it has one or its status changes, or after N seconds (at most
    /// `maxWaitSeconds`) as it is then — a checkout waits for its pay link with one request, not
    /// a read every few hundred milliseconds.
    @Sendable func show(_ request: Request, context: CrestRequestContext) async throws -> OrderBody {
        var wait = 0
        if let raw = request.uri.queryParameters["wait"] {
            guard let seconds = Int(raw), (0...Self.maxWaitSeconds).contains(seconds) else {
                throw ValidationError(
                    field: "wait", message: "must be a whole number of seconds from 0 to \(Self.maxWaitSeconds)")
            }
            wait = seconds
        }
        let order = try await accessibleOrder(request, context: context)
        guard wait > 0, Self.awaitsItsPayment(order) else { return OrderBody(order) }
        return OrderBody(
            try await engine.order(order.id, waitingUntil: .now + .seconds(wait), while: Self.awaitsItsPayment))
    }

    /// The longest `wait` of a read: well below the usual read timeouts of proxies and clients (20–60 s).
    static let maxWaitSeconds = 10

    static func awaitsItsPayment(_ order: Order) -> Bool { order.status == .pendingPayment && order.payment == nil }

    /// `POST /v1/orders/{id}/payment`: the order with its payment (and where to pay), created at
    /// the provider now if Crest's job has not yet — a checkout calls it when its buyer comes to
    /// pay, instead of waiting behind the creations of every order placed before.
    @Sendable func checkout(_ request: Request, context: CrestRequestContext) async throws -> OrderBody {
        OrderBody(try await engine.checkout(try await accessibleOrder(request, context: context)))
    }

    @Sendable func cancel(_ request: Request, context: CrestRequestContext) async throws -> OrderBody {
        OrderBody(try await engine.cancelOrder(try await accessibleOrder(request, context: context).id))
    }

    /// The order of the path, when the caller may see it; `orderNotFound` otherwise.
    private func accessibleOrder(_ request: Request, context: CrestRequestContext) async throws -> Order {
        let id = try context.orderID()
        let caller = try await callers.caller(of: request)
        let order = try await engine.order(id)
        guard caller.mayAccess(order) else { throw OrderError.orderNotFound }
        return order
    }

    /// Cancels whatever the request with this `Idempotency-Key` did or will do: its order, or — when
    /// it placed none (yet) — the attempt itself, which is then refused if it arrives later.
    @Sendable func cancelAttempt(_ request: Request, context: CrestRequestContext) async throws
        -> AttemptCancellationBody
    {
        let saleID = try context.saleID()
        guard let key = request.headers[.idempotencyKey] else {
            throw ValidationError(field: "Idempotency-Key", message: "header is required")
        }
        let caller = try await callers.caller(of: request)
        return AttemptCancellationBody(
            try await engine.cancelAttempt(saleID: saleID, idempotencyKey: key, buyer: caller.scopedBuyer))
    }

    /// An order's life for support (operators): each event with its time and how long after the
    /// order it came, and under each its deliveries to merchant endpoints.
    @Sendable func timeline(_ request: Request, context: CrestRequestContext) async throws -> OrderTimelineBody {
        OrderTimelineBody(try await engine.timeline(of: try context.orderID()))
    }

    @Sendable func events(_ request: Request, context: CrestRequestContext) async throws -> EventListBody {
        let order = try await accessibleOrder(request, context: context)
        return EventListBody(events: try await engine.events(of: order.id).map(EventBody.init))
    }

    /// `GET /v1/orders?saleId=…&status=…&flagged=true`: orders for operators, oldest first.
    @Sendable func list(_ request: Request, context: CrestRequestContext) async throws -> OrderPageBody {
        var issues: [ValidationError.Issue] = []
        let query = PageQuery(request, cursor: OrderID.init, cursorMeaning: "an order id", issues: &issues)
        var filter = OrderFilter()
        filter.status = request.enumQuery("status", as: Order.Status.self, issues: &issues)
        if let raw = request.uri.queryParameters["saleId"] {
            filter.saleID = SaleID(String(raw))
            if filter.saleID == nil { issues.append(.init(field: "saleId", message: "must be a sale id")) }
        }
        switch request.uri.queryParameters["flagged"] {
        case nil, "false": break
        case "true": filter.flaggedOnly = true
        default: issues.append(.init(field: "flagged", message: "must be true or false"))
        }
        guard issues.isEmpty else { throw ValidationError(issues: issues) }
        let page = query.page(
            try await engine.orders(matching: filter, after: query.after, limit: query.limit + 1), cursor: \.id)
        return OrderPageBody(orders: page.items.map(OrderBody.init), next: page.next)
    }
}
