import CrestCore

/// A node's last view of a sale: its row as this node's last batch on it left it.
struct PostgresSaleView: Sendable {
    var sale: Sale
    var version: Int64
    /// Whether a batch on the sale may try the one-statement path: nobody else moved the sale
    /// between this node's last two batches on it, and the last one-statement try did not miss.
    /// On a sale that several nodes take turns on, the view is old more often than not, and a
    /// try that misses costs a trip for nothing.
    var current: Bool
}

/// What a PostgreSQL node keeps between its reservation batches for the one-statement path
/// (`PostgresReservationLedger.runOnLastView`): each sale's last view and the webhook endpoints
/// its last six-statement batch read. Memory only; a sale's entry is as large as its row.
struct PostgresLastViews: Sendable {
    private var sales: [SaleID: PostgresSaleView] = [:]
    private var endpoints: [WebhookEndpoint]?

    /// The view to decide `batch` on in one statement, and the endpoints to write its deliveries
    /// for: only for a batch on one sale whose view is current, once endpoints were read.
    func oneStatementView(for batch: [Reservation]) -> (view: PostgresSaleView, endpoints: [WebhookEndpoint])? {
        guard let sale = batch.first?.request.saleID, batch.allSatisfy({ $0.request.saleID == sale }),
            let view = sales[sale], view.current, let endpoints
        else { return nil }
        return (view, endpoints)
    }

    /// Keeps what a batch read and wrote. A sale's view stays current when the version the
    /// batch found is the one this node's last batch left (nobody else moved it in between).
    mutating func keep(_ answer: PostgresReservationLedger.Answer) {
        for (id, read) in answer.sales {
            let version = answer.result.counters[id]?.version ?? read.versionBefore
            let current = sales[id].map { $0.version == read.versionBefore } ?? true
            sales[id] = PostgresSaleView(sale: read.sale, version: version, current: current)
        }
        endpoints = answer.endpoints
    }

    /// The one-statement path missed on `sale`: its next batch takes the six statements.
    mutating func missed(_ sale: SaleID) {
        sales[sale]?.current = false
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
