import CrestCore
import CrestEngine
import HTTPTypes
import Hummingbird

/// `/v1/sales`: operators create and list sales (admin token); anyone reads one sale's live counters.
struct SaleRoutes {
    static let defaultPageSize = 50
    static let maxPageSize = 200

    let engine: Engine

    func add(to router: Router<CrestRequestContext>, admin: AdminAuthMiddleware<CrestRequestContext>) {
        router.group("v1/sales")
            .add(middleware: admin)
            .post(use: create)
            .get(use: list)
        router.get("v1/sales/{saleID}", use: show)
    }

    @Sendable func create(_ request: Request, context: CrestRequestContext) async throws -> EditedResponse<SaleBody> {
        let body = try await request.decodeJSON(as: CreateSaleBody.self, context: context)
        let sale = try await engine.createSale(body.draft)
        return EditedResponse(status: .created, headers: [.location: "/v1/sales/\(sale.id)"], response: SaleBody(sale))
    }

    @Sendable func list(_ request: Request, context: CrestRequestContext) async throws -> SalePageBody {
        var issues: [ValidationError.Issue] = []
        var after: SaleID?
        if let raw = request.uri.queryParameters["after"] {
            after = SaleID(String(raw))
            if after == nil { issues.append(.init(field: "after", message: "must be a sale id")) }
        }
        var limit = Self.defaultPageSize
        if let raw = request.uri.queryParameters["limit"] {
            if let value = Int(raw), (1...Self.maxPageSize).contains(value) {
                limit = value
            } else {
                issues.append(.init(field: "limit", message: "must be an integer from 1 to \(Self.maxPageSize)"))
            }
        }
        guard issues.isEmpty else { throw ValidationError(issues: issues) }
        let sales = try await engine.sales(after: after, limit: limit + 1)
        let page = sales.prefix(limit)
        return SalePageBody(sales: page.map(SaleBody.init), next: sales.count > limit ? page.last?.id : nil)
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
