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

    /// Operators' resolutions of reported differences, one per difference (its kind and payment),
    /// whichever run's item it was given on.
    static func resolutions(text: String, integer: String, strict: String) -> [String] {
        [
            """
            CREATE TABLE reconciliation_resolutions (
                kind \(text) NOT NULL,
                payment_id \(text) NOT NULL,
                run_id \(text) NOT NULL,
                sequence \(integer) NOT NULL,
                note \(text) NOT NULL,
                resolved_at \(integer) NOT NULL,
                PRIMARY KEY (kind, payment_id),
                FOREIGN KEY (run_id, sequence) REFERENCES reconciliation_items (run_id, sequence)
            )\(strict)
            """,
            "CREATE INDEX reconciliation_items_reported ON reconciliation_items (kind, payment_id) WHERE resolution = 'reported'",
        ]
    }

    static let runColumns =
        "id, window_from, window_to, state, started_at, finished_at, lines, matched, healed, under_way, reported, error"
    static let itemColumns =
        "run_id, sequence, kind, resolution, payment_id, order_id, books_before, books_after, action, recorded_at"

    /// Items with their operator's resolution (only a reported item has one); a `WHERE` may follow.
    static let itemSelect = """
        SELECT i.run_id, i.sequence, i.kind, i.resolution, i.payment_id, i.order_id, i.books_before, i.books_after,
            i.action, i.recorded_at, r.run_id AS resolved_on_run, r.sequence AS resolved_on_item, r.note AS resolution_note,
            r.resolved_at
        FROM reconciliation_items i
        LEFT JOIN reconciliation_resolutions r ON i.resolution = 'reported' AND r.kind = i.kind AND r.payment_id = i.payment_id
        """

    /// The reported differences, each once (the newest item of each kind and payment), for the audit.
    static let reportedSelect = """
        \(itemSelect)
        WHERE i.resolution = 'reported' AND NOT EXISTS (
            SELECT 1 FROM reconciliation_items later
            WHERE later.kind = i.kind AND later.payment_id = i.payment_id AND later.resolution = 'reported'
                AND (later.run_id > i.run_id OR (later.run_id = i.run_id AND later.sequence > i.sequence)))
        ORDER BY i.run_id, i.sequence
        """

    /// How many reported differences (kind and payment) no operator resolved yet.
    static let openCountSQL = """
        SELECT count(*) FROM (
            SELECT DISTINCT i.kind, i.payment_id FROM reconciliation_items i
            WHERE i.resolution = 'reported' AND NOT EXISTS (
                SELECT 1 FROM reconciliation_resolutions r WHERE r.kind = i.kind AND r.payment_id = i.payment_id)
        ) AS open_differences
        """

    /// An operator's resolution, unless the difference has one already.
    static let resolveSQL = """
        INSERT INTO reconciliation_resolutions (kind, payment_id, run_id, sequence, note, resolved_at)
        SELECT kind, payment_id, run_id, sequence, $3, $4 FROM reconciliation_items
        WHERE run_id = $1 AND sequence = $2 AND resolution = 'reported'
        ON CONFLICT (kind, payment_id) DO NOTHING
        """

    /// The outcome of resolving `runID`'s item `sequence` with `note`, from the item as read after
    /// the insert (`nil`: no such item).
    static func outcome(_ item: ReconciliationItem?, note: String) -> OperatorResolutionOutcome {
        guard let item else { return .notFound }
        guard item.resolution == .reported, let given = item.operatorResolution else { return .notReported(item.resolution) }
        return given.note == note ? .resolved(item) : .resolvedBefore(given)
    }

    /// A statement above written with PostgreSQL's numbered parameters (`$1`), for SQLite (`?1`).
    static func sqlite(_ sql: String) -> String { sql.replacingOccurrences(of: "$", with: "?") }

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
