import CrestCore
import CrestEngine
import HTTPTypes
import Hummingbird

/// `/v1/sales`: operators create and list sales and change a sale's rate limits (admin token);
/// anyone reads one sale's live counters.
struct SaleRoutes {
    let engine: Engine

    func add(to router: Router<CrestRequestContext>, admin: AdminAuthMiddleware<CrestRequestContext>) {
        router.group("v1/sales")
            .add(middleware: admin)
            .post(use: create)
            .get(use: list)
        router.get("v1/sales/{saleID}", use: show)
        router.group("v1/sales/{saleID}")
            .add(middleware: admin)
            .patch(use: update)
    }

    /// Changes the sale's own rate limits (the only thing of a sale that changes once created).
    @Sendable func update(_ request: Request, context: CrestRequestContext) async throws -> SaleBody {
        let id = try context.saleID()
        let body = try await request.decodeJSON(as: UpdateSaleBody.self, context: context)
        return SaleBody(try await engine.updateSaleLimits(id, to: body.limits))
    }

    @Sendable func create(_ request: Request, context: CrestRequestContext) async throws -> EditedResponse<SaleBody> {
        let body = try await request.decodeJSON(as: CreateSaleBody.self, context: context)
        let sale = try await engine.createSale(body.draft)
        return EditedResponse(status: .created, headers: [.location: "/v1/sales/\(sale.id)"], response: SaleBody(sale))
    }

    @Sendable func list(_ request: Request, context: CrestRequestContext) async throws -> SalePageBody {
        var issues: [ValidationError.Issue] = []
        let query = PageQuery(request, cursor: SaleID.init, cursorMeaning: "a sale id", issues: &issues)
        guard issues.isEmpty else { throw ValidationError(issues: issues) }
        let page = query.page(try await engine.sales(after: query.after, limit: query.limit + 1), cursor: \.id)
        return SalePageBody(sales: page.items.map(SaleBody.init), next: page.next)
    }

    @Sendable func show(_ request: Request, context: CrestRequestContext) async throws -> SaleBody {
        SaleBody(try await engine.sale(try context.saleID()))
    }
}

extension CrestRequestContext {
    /// The `{saleID}` path parameter; an id that cannot exist is an unknown sale.
    func saleID() throws -> SaleID {
        guard let raw = parameters.get("saleID"), let id = SaleID(raw) else { throw OrderError.saleNotFound }
        return id
    }

    /// The `{orderID}` path parameter; an id that cannot exist is an unknown order.
    func orderID() throws -> OrderID {
        guard let raw = parameters.get("orderID"), let id = OrderID(raw) else { throw OrderError.orderNotFound }
        return id
    }
}
