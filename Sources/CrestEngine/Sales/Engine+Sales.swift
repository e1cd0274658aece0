import CrestCore
import CrestStore
import Logging

extension Engine {
    /// Creates a sale from a validated draft; it opens at `startsAt` (default: now).
    package func createSale(_ draft: SaleDraft) async throws -> Sale {
        let now = clock()
        let sale = try draft.validated(id: SaleID.make(now: now), now: now)
        try await withStore("create sale") { try await store.createSale(sale) }
        metrics.publish(sale.stock, of: sale.id)
        logger.info(
            "sale created", metadata: ["sale": "\(sale.id)", "sku": "\(sale.sku)", "stock": "\(sale.stock.total)"])
        return sale
    }

    /// The sale with its live counters, read from the store.
    package func sale(_ id: SaleID) async throws -> Sale {
        guard let sale = try await withStore("read sale", { try await store.sale(id) }) else {
            throw OrderError.saleNotFound
        }
        return sale
    }

    /// Sales in creation order, `limit` at a time, after the sale `after`.
    package func sales(after: SaleID?, limit: Int) async throws -> [Sale] {
        try await withStore("list sales") { try await store.sales(after: after, limit: limit) }
    }
}
