import CrestCore
import CrestEngine
import HTTPTypes
import Hummingbird

extension HTTPField.Name {
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
    static let idempotentReplayed = HTTPField.Name("Idempotent-Replayed")!
}

/// Buyers place orders on a sale, read them and cancel them while they await payment.
struct OrderRoutes {
    let engine: Engine

    func add(to router: Router<CrestRequestContext>) {
        router.post("v1/sales/{saleID}/orders", use: place)
        router.get("v1/orders/{orderID}", use: show)
        router.post("v1/orders/{orderID}/cancel", use: cancel)
    }

    /// `201` with the order once its reservation is durable; a replayed key answers `201` with the
    /// same order and `Idempotent-Replayed: true`.
    @Sendable func place(_ request: Request, context: CrestRequestContext) async throws -> EditedResponse<OrderBody> {
        let saleID = try context.saleID()
        guard let key = request.headers[.idempotencyKey] else {
            throw ValidationError(field: "Idempotency-Key", message: "header is required")
        }
        let body = try await request.decodeJSON(as: PlaceOrderBody.self, context: context)
        let placed = try await engine.placeOrder(
            OrderRequest(saleID: saleID, idempotencyKey: key, buyer: body.buyer, quantity: body.quantity))
        var headers: HTTPFields = [.location: "/v1/orders/\(placed.order.id)"]
        if placed.replayed { headers[.idempotentReplayed] = "true" }
        return EditedResponse(status: .created, headers: headers, response: OrderBody(placed.order))
    }

    @Sendable func show(_ request: Request, context: CrestRequestContext) async throws -> OrderBody {
        OrderBody(try await engine.order(try context.orderID()))
    }

    @Sendable func cancel(_ request: Request, context: CrestRequestContext) async throws -> OrderBody {
        OrderBody(try await engine.cancelOrder(try context.orderID()))
    }
}
