import CrestCore
import NIOCore
import PostgresNIO

/// A node's last view of a sale: its row as this node's last batch on it left it.
struct PostgresSaleView: Sendable {
    var sale: Sale
    var version: Int64
    /// Whether a batch on the sale may try the one-statement path: nobody else moved the sale
    /// between this node's last two batches on it, and the last one-statement try did not miss.
    /// On a sale that several nodes take turns on, the view is old more often than not, and a
    /// try that misses costs a trip for nothing.
    var current: Bool
    /// When this node's last batch on the sale ended (`PostgresLastViews`' count of batches).
    var used: UInt64 = 0
}

/// What a PostgreSQL node keeps between its reservation batches for the one-statement path
/// (`PostgresReservationLedger.oneStatement`): each sale's last view, the webhook endpoints its
/// last six-statement batch read, and each sale's one-statement batch still in flight — the next
/// batch on the sale is decided on what that one decided and queued behind it on the lane
/// (`PostgresLane`), asking the server for its version + 1 and one of its orders. Memory only; a
/// sale's entry is as large as its row, and at most `maxSales` are kept: past that, the half
/// batched least recently are dropped (a sale without a view takes the six statements once).
struct PostgresLastViews: Sendable {
    /// A one-statement batch sent and not yet answered.
    struct Started: Sendable {
        var token: Int
        var statement: PostgresReservationLedger.OneStatement
        var answer: EventLoopFuture<[PostgresRow]>
    }

    private var sales: [SaleID: PostgresSaleView] = [:]
    private var endpoints: [WebhookEndpoint]?
    /// Per sale, the last one-statement batch sent and not yet answered.
    private var tails: [SaleID: Started] = [:]
    /// Per sale, the six-statement batches under way (a one-statement batch would only miss
    /// behind one: its version moves).
    private var locked: [SaleID: Int] = [:]
    private var nextToken = 0
    private let maxSales: Int
    /// Batches ended, for each view's `used`.
    private var ended: UInt64 = 0
    /// One-statement batches sent and not yet answered.
    private(set) var sent = 0
    /// Whether the last batch answered went in one statement: batches are then worth overlapping
    /// (chained on the lane); six-statement batches are not — they would only take turns on the
    /// sale's row lock, and in smaller batches.
    private(set) var chaining = false

    init(maxSales: Int = 10_000) {
        precondition(maxSales > 1, "keep at least two sales' views")
        self.maxSales = maxSales
    }

    /// The sales whose views are kept.
    var salesKept: Int { sales.count }

    /// Whether `batch` may try the one-statement path: one sale, a current view, no batch of the
    /// sale under way the six-statement way, endpoints known.
    func mayTryOneStatement(_ batch: [Reservation]) -> Bool {
        guard let sale = Self.onlySale(of: batch), let view = sales[sale], view.current else { return false }
        return locked[sale, default: 0] == 0 && endpoints != nil
    }

    /// Decides `batch` for the one-statement path — on the view, or behind the sale's batch still
    /// in flight — and sends its statement with `send` (under the caller's lock, so that the
    /// order of the statements on the lane is the order of the decisions). `nil` when the batch
    /// may not take the path, or grants nothing (a refusal decided on the view alone is not
    /// checked by any write): it is to take the six statements.
    mutating func startOneStatement(
        _ batch: [Reservation], send: (PostgresReservationLedger.PreparedWrite) -> EventLoopFuture<[PostgresRow]>
    ) -> Started? {
        guard mayTryOneStatement(batch), let sale = Self.onlySale(of: batch), let view = sales[sale], let endpoints
        else { return nil }
        let statement: PostgresReservationLedger.OneStatement?
        if let tail = tails[sale] {
            statement = PostgresReservationLedger.oneStatement(
                batch, base: tail.statement.ledger.continued(), version: tail.statement.version + 1,
                after: tail.statement.firstOrder)
        } else {
            statement = PostgresReservationLedger.oneStatement(
                batch, base: PostgresReservationLedger(view: view, endpoints: endpoints), version: view.version, after: nil)
        }
        guard let statement else { return nil }
        nextToken += 1
        sent += 1
        let started = Started(token: nextToken, statement: statement, answer: send(.init(statement.query)))
        tails[sale] = started
        return started
    }

    /// `started` was answered: `answer`, or `nil` when it wrote nothing or failed — then the
    /// batches chained behind it will miss too, and the sale's next batch reads it again.
    mutating func finish(_ started: Started, answer: PostgresReservationLedger.Answer?) {
        let sale = started.statement.sale
        sent -= 1
        if tails[sale]?.token == started.token { tails[sale] = nil }
        chaining = answer != nil
        guard let answer else {
            sales[sale]?.current = false
            tails[sale] = nil
            return
        }
        ended += 1
        for (id, read) in answer.sales {
            guard let version = answer.result.counters[id]?.version, var view = sales[id], version > view.version else { continue }
            view.sale = read.sale
            view.version = version
            view.used = ended
            sales[id] = view
        }
    }

    /// A six-statement batch on these sales begins.
    mutating func startLocked(_ batch: [Reservation]) {
        for sale in Set(batch.map(\.request.saleID)) { locked[sale, default: 0] += 1 }
    }

    /// A six-statement batch ended: what it read and wrote, or `nil` when it failed. A sale's view
    /// stays current when the version the batch found is the one this node's last batch left
    /// (nobody else moved it in between).
    mutating func finishLocked(_ batch: [Reservation], answer: PostgresReservationLedger.Answer?) {
        for sale in Set(batch.map(\.request.saleID)) {
            locked[sale, default: 1] -= 1
            if locked[sale] == 0 { locked[sale] = nil }
        }
        chaining = false
        guard let answer else { return }
        ended += 1
        for (id, read) in answer.sales {
            let version = answer.result.counters[id]?.version ?? read.versionBefore
            let current = sales[id].map { $0.version == read.versionBefore } ?? true
            sales[id] = PostgresSaleView(sale: read.sale, version: version, current: current, used: ended)
        }
        endpoints = answer.endpoints
        if sales.count > maxSales {
            let kept = sales.sorted { $0.value.used > $1.value.used }.prefix(maxSales / 2)
            sales = Dictionary(uniqueKeysWithValues: kept.map { ($0.key, $0.value) })
        }
    }

    private static func onlySale(of batch: [Reservation]) -> SaleID? {
        guard let sale = batch.first?.request.saleID, batch.allSatisfy({ $0.request.saleID == sale }) else { return nil }
        return sale
    }
}

/// How a PostgreSQL node's reservation batches were written (`crest_postgres_reservation_batches_total`).
package enum PostgresBatchPath: String, Sendable, CaseIterable {
    /// One statement against the node's last view of the sale.
    case oneStatement = "one_statement"
    /// The one-statement path tried and found the view out of date (nothing written; the batch
    /// then took the six statements, counted as `locked` too).
    case oneStatementMissed = "one_statement_missed"
    /// Six statements: lock, look up, decide, write, commit.
    case locked
}
