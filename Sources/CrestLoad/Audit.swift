import CrestCore
import Foundation

/// After the load: the server's own account of the sale, checked against what the run saw.
///
/// Each check is a promise of Crest's (../shared/DESIGN.md, "The promises"): stock is conserved,
/// nothing is oversold, every acknowledged order exists, no buyer holds more than the limit, a
/// repeated key gets its first answer, and — with payments — paid orders are paid and the rest
/// gave their stock back.
struct Audit {
    let api: CrestAPI
    let saleID: String
    /// The units the run put on sale when it created the sale (so every order in it should be one
    /// of the run's); `nil` for a sale it was given.
    let createdStock: Int64?
    let tally: Tally
    let paid: PaymentRun?

    struct Outcome {
        var stock: LoadReport.Counters
        var checks: [LoadReport.Check]
        var payments: LoadReport.Payments?
    }

    static let liveStatuses: Set<String> = ["pending_payment", "paid"]

    func run() async throws -> Outcome {
        let readBack = try await api.orders(ids: tally.accepted.keys)
        let listing = try await api.orders(saleID: saleID)
        let sale = try await api.sale(saleID)
        let stock = sale.stock
        var checks: [LoadReport.Check] = []

        let counted = stock.available + stock.reserved + stock.sold
        checks.append(
            .init(
                name: "stock conserved", passed: stock.isConserved,
                detail: "available \(stock.available) + reserved \(stock.reserved) + sold \(stock.sold) = \(counted), total \(stock.total)")
        )

        let live = listing.filter { Self.liveStatuses.contains($0.status) }
        let liveUnits = live.reduce(Int64(0)) { $0 + Int64($1.quantity) }
        let acceptedUnits = tally.accepted.values.reduce(Int64(0)) { $0 + Int64($1.quantity) }
        let endedOfOurs = readBack.values.compactMap { $0 }.filter { !Self.liveStatuses.contains($0.status) }
        let endedUnits = endedOfOurs.reduce(Int64(0)) { $0 + Int64($1.quantity) }
        let heldByUs = acceptedUnits - endedUnits
        let onSale = createdStock ?? stock.total
        let noOversell =
            liveUnits == stock.reserved + stock.sold && stock.reserved + stock.sold <= onSale
            && heldByUs <= onSale && stock.total == onSale
        var detail =
            "\(tally.accepted.count) orders accepted (\(acceptedUnits) units, \(endedUnits) since given back); live orders hold \(liveUnits) units; reserved + sold = \(stock.reserved + stock.sold); total \(stock.total)"
        if stock.total != onSale { detail += ", but \(onSale) units were put on sale" }
        checks.append(.init(name: "no oversell", passed: noOversell, detail: detail))

        let listed = Set(listing.map(\.id))
        var lost: [String] = []
        for (id, accepted) in tally.accepted {
            guard let order = readBack[id] ?? nil, order.saleId == saleID, order.buyer == accepted.buyer,
                order.quantity == accepted.quantity, listed.contains(id)
            else {
                lost.append(id)
                continue
            }
        }
        checks.append(
            .init(
                name: "nothing lost", passed: lost.isEmpty,
                detail: lost.isEmpty
                    ? "all \(tally.accepted.count) accepted orders read back, and listed in the sale"
                    : "\(lost.count) of \(tally.accepted.count) accepted orders are missing or changed: \(lost.sorted().prefix(5).joined(separator: ", "))"
            ))

        var held: [String: Int] = [:]
        for order in live { held[order.buyer, default: 0] += order.quantity }
        let over = held.filter { $0.value > sale.perBuyerLimit }
        checks.append(
            .init(
                name: "per-buyer limit", passed: over.isEmpty,
                detail: over.isEmpty
                    ? "\(held.count) buyers hold live orders, none more than \(sale.perBuyerLimit)"
                    : "\(over.count) buyers over the limit of \(sale.perBuyerLimit), e.g. \(over.sorted { $0.key < $1.key }.prefix(3).map { "\($0.key) holds \($0.value)" }.joined(separator: ", "))"
            ))

        checks.append(
            .init(
                name: "idempotent repeats", passed: tally.replayMismatches.isEmpty,
                detail: tally.replayMismatches.isEmpty
                    ? "\(tally.replays) repeated attempts; every repeat of an accepted one answered with its order"
                    : "\(tally.replayMismatches.count) repeats answered differently, e.g. \(tally.replayMismatches[0])"))

        if createdStock != nil {
            let unknown = listed.subtracting(tally.accepted.keys)
            var detail = "\(unknown.count) orders in the sale that no answer named"
            if tally.resent > 0 {
                detail +=
                    "; attempts answered 503 or not at all were sent again with their keys (\(tally.resent) sends), which found \(tally.foundByResending) orders"
            }
            if !tally.unsettled.isEmpty {
                detail += "; \(tally.unsettled.count) attempts' fate is still unknown, each may have created one"
            }
            checks.append(.init(name: "no unknown orders", passed: unknown.count <= tally.unsettled.count, detail: detail))
        }

        // A 503 is Crest saying a dependency is unavailable, or that it is refusing work for load,
        // and nothing was acknowledged — allowed; any other 5xx is a broken promise.
        let unavailable = tally.outcomes.filter { $0.key.hasPrefix("503") }.values.reduce(0, +)
        let serverErrors = tally.outcomes.filter { $0.key.hasPrefix("5") }.values.reduce(0, +) - unavailable
        var errorsDetail = serverErrors == 0 ? "no 5xx answer" : "\(serverErrors) answers were 5xx"
        if unavailable > 0 { errorsDetail += " other than \(unavailable) 503s (unavailable or overloaded, nothing acknowledged)" }
        checks.append(.init(name: "no server errors", passed: serverErrors == 0, detail: errorsDetail))

        var payments: LoadReport.Payments?
        if let paid {
            let (check, summary) = paymentCheck(paid, readBack: readBack)
            checks.append(check)
            payments = summary
        }
        return Outcome(stock: stock, checks: checks, payments: payments)
    }

    /// Paid orders are `paid` (or `refunded`, when the payment came after the order had expired),
    /// every other accepted order has ended (`expired`, or `cancelled`), none is still pending.
    private func paymentCheck(_ paid: PaymentRun, readBack: [String: CrestAPI.OrderView?])
        -> (LoadReport.Check, LoadReport.Payments)
    {
        var summary = LoadReport.Payments(
            chosen: paid.chosen.count, paid: paid.paid.count, failed: paid.failed.count,
            notPaid: Dictionary(uniqueKeysWithValues: paid.notPaid.map { ($0.key.rawValue, $0.value) }), ordersPaid: 0,
            ordersExpired: 0, ordersRefunded: 0, ordersCancelled: 0, ordersPending: 0)
        var wrong: [String] = []
        for (id, order) in readBack {
            guard let order else { continue }  // reported by "nothing lost"
            switch order.status {
            case "paid": summary.ordersPaid += 1
            case "expired": summary.ordersExpired += 1
            case "refunded": summary.ordersRefunded += 1
            case "cancelled": summary.ordersCancelled += 1
            default: summary.ordersPending += 1
            }
            if paid.paid.contains(id), order.status == "refunded" { summary.paidLate += 1 }
            let fine =
                paid.paid.contains(id)
                ? ["paid", "refunded"].contains(order.status)
                : ["expired", "cancelled"].contains(order.status)
            if !fine {
                wrong.append("\(id) is \(order.status)\(paid.paid.contains(id) ? " though paid" : " though never paid")")
            }
        }
        let check = LoadReport.Check(
            name: "payments settled", passed: wrong.isEmpty,
            detail: wrong.isEmpty
                ? "\(summary.ordersPaid) paid orders are paid (\(summary.ordersRefunded) paid too late and refunded); \(summary.ordersExpired) unpaid ones expired and gave their stock back"
                : "\(wrong.count) orders ended wrong, e.g. \(wrong.sorted().prefix(3).joined(separator: "; "))")
        return (check, summary)
    }
}
