import CrestCore
import Foundation

/// The reconciliation tables, the same on both stores but for the column types' names.
enum ReconciliationSchema {
    static func tables(text: String, integer: String, strict: String) -> [String] {
        [
            """
            CREATE TABLE reconciliation_runs (
                id \(text) PRIMARY KEY,
                window_from \(integer) NOT NULL,
                window_to \(integer) NOT NULL,
                state \(text) NOT NULL CHECK (state IN ('running', 'finished', 'failed')),
                started_at \(integer) NOT NULL,
                finished_at \(integer),
                lines \(integer) NOT NULL,
                matched \(integer) NOT NULL,
                healed \(integer) NOT NULL,
                under_way \(integer) NOT NULL,
                reported \(integer) NOT NULL,
                error \(text)
            )\(strict)
            """,
            // One row per difference found; a heal's row is written in the heal's transaction.
            """
            CREATE TABLE reconciliation_items (
                run_id \(text) NOT NULL REFERENCES reconciliation_runs(id),
                sequence \(integer) NOT NULL,
                kind \(text) NOT NULL,
                resolution \(text) NOT NULL CHECK (resolution IN ('healed', 'heal-under-way', 'reported')),
                payment_id \(text) NOT NULL,
                order_id \(text),
                books_before \(text) NOT NULL,
                books_after \(text) NOT NULL,
                action \(text) NOT NULL,
                recorded_at \(integer) NOT NULL,
                PRIMARY KEY (run_id, sequence)
            )\(strict)
            """,
            "CREATE INDEX reconciliation_items_by_payment ON reconciliation_items (payment_id)",
            "CREATE INDEX orders_with_payment_by_created ON orders (created_at) WHERE payment_id IS NOT NULL",
        ]
    }

    static let runColumns =
        "id, window_from, window_to, state, started_at, finished_at, lines, matched, healed, under_way, reported, error"
    static let itemColumns =
        "run_id, sequence, kind, resolution, payment_id, order_id, books_before, books_after, action, recorded_at"

    static func decode<T>(_ value: T?, _ column: String) throws -> T {
        guard let value else { throw CorruptReconciliationRow(column: column) }
        return value
    }

    /// The payment of an ended order marked failed, when it is still as the heal found it.
    static let markFailedSQL = """
        UPDATE orders SET payment_status = 'failed'
        WHERE id = $1 AND payment_id = $2 AND payment_status = 'succeeded' AND status IN ('cancelled', 'expired')
        """

    /// What becomes of an item whose heal was refused by the store.
    static func refused(_ item: ReconciliationItem, _ failure: PaymentRecordFailure) -> ReconciliationItem {
        var item = item
        item.resolution = .reported
        item.after = ""
        item.action = "not healed: \(failure)"
        return item
    }

    /// An earlier heal's refund job is still live (its unique key): this one is the same heal.
    static func underWay(_ item: ReconciliationItem) -> ReconciliationItem {
        var item = item
        item.resolution = .healUnderWay
        item.after = ""
        return item
    }

    static func changed(_ item: ReconciliationItem) -> ReconciliationItem {
        var item = item
        item.resolution = .reported
        item.after = ""
        item.action = "not healed: the order changed since the statement was read"
        return item
    }
}

extension Store {
    /// One difference, as `recordReconciliationItems` records it.
    public func recordReconciliationItem(_ item: ReconciliationItem, heal: ReconciliationHeal?) async throws -> ReconciliationItem {
        try await recordReconciliationItems([ReconciliationRecord(item: item, heal: heal)])[0]
    }
}

/// A stored row the store cannot read back (a value no version of Crest writes).
struct CorruptReconciliationRow: Error, CustomStringConvertible {
    var column: String
    var description: String { "unreadable reconciliation value in \(column)" }
}
