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

    /// Replaces the sale's own rate limits; they apply on this node at once, on others within
    /// `SaleLimitsCache.freshness`.
    package func updateSaleLimits(_ id: SaleID, to limits: SaleLimits) async throws -> Sale {
        let issues = limits.issues()
        guard issues.isEmpty else { throw ValidationError(issues: issues) }
        guard let sale = try await withStore("update sale limits", { try await store.updateSaleLimits(id, to: limits) })
        else { throw OrderError.saleNotFound }
        saleLimits.remember(sale.limits, of: id, at: .now)
        logger.info("sale limits changed", metadata: ["sale": "\(id)", "limits": "\(limits)"])
        return sale
    }

    /// The sale's own rate limits, for admission: from memory while fresh, else read again by one
    /// attempt while the others take the limits last read (`SaleLimitsCache`); `.none` for an
    /// unknown sale (the order path answers that).
    package func limits(of id: SaleID) async throws -> SaleLimits {
        let now = ContinuousClock.now
        switch saleLimits.lookup(id, at: now) {
        case .fresh(let limits), .stale(let limits): return limits
        case .readAgain, .unknown: break
        }
        do {
            let limits = try await withStore("read sale limits") { try await store.sale(id)?.limits } ?? .none
            saleLimits.remember(limits, of: id, at: now)
            return limits
        } catch {
            saleLimits.failedToRead(id)
            throw error
        }
    }

    /// The sale's own rate limits when read in the last `SaleLimitsCache.freshness`, without
    /// asking the store; `nil` otherwise.
    package func knownLimits(of id: SaleID) -> SaleLimits? {
        saleLimits.fresh(id, at: ContinuousClock.now)
    }

    /// Sales in creation order, `limit` at a time, after the sale `after`.
    package func sales(after: SaleID?, limit: Int) async throws -> [Sale] {
        try await withStore("list sales") { try await store.sales(after: after, limit: limit) }
    }
}
