import CrestCore
import Foundation
import GRDB

extension SQLiteStore {
    public func ordersWithPayment(createdFrom from: Date, to: Date) async throws -> [Order] {
        try await pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT \(SQLiteRows.orderColumns) FROM orders
                    WHERE payment_id IS NOT NULL AND created_at >= ? AND created_at < ? ORDER BY id
                    """, arguments: [SQLiteRows.millis(from), SQLiteRows.millis(to)]
            ).map(SQLiteRows.order)
        }
    }

    public func createReconciliationRun(_ run: ReconciliationRun) async throws {
        try await pool.write { db in
            try db.execute(
                sql: "INSERT INTO reconciliation_runs (\(ReconciliationSchema.runColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                arguments: Self.arguments(run))
        }
    }

    public func updateReconciliationRun(_ run: ReconciliationRun) async throws {
        try await pool.write { db in
            try db.execute(
                sql: """
                    UPDATE reconciliation_runs SET state = ?, finished_at = ?, lines = ?, matched = ?, healed = ?,
                        under_way = ?, reported = ?, error = ? WHERE id = ?
                    """,
                arguments: [
                    run.state.rawValue, run.finishedAt.map(SQLiteRows.millis), run.lines, run.matched, run.healed,
                    run.underWay, run.reported, run.error, run.id.description,
                ])
        }
    }

    public func reconciliationRun(_ id: ReconciliationRunID) async throws -> ReconciliationRun? {
        try await pool.read { db in
            try Row.fetchOne(
                db, sql: "SELECT \(ReconciliationSchema.runColumns) FROM reconciliation_runs WHERE id = ?",
                arguments: [id.description]
            ).map(Self.run)
        }
    }

    public func reconciliationRuns(after: ReconciliationRunID?, limit: Int) async throws -> [ReconciliationRun] {
        try await pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT \(ReconciliationSchema.runColumns) FROM reconciliation_runs
                    WHERE ? IS NULL OR id < ? ORDER BY id DESC LIMIT ?
                    """, arguments: [after?.description, after?.description, limit]
            ).map(Self.run)
        }
    }

    public func reconciliationItems(of run: ReconciliationRunID, after: Int?, limit: Int) async throws -> [ReconciliationItem] {
        try await pool.read { db in
            try Row.fetchAll(
                db,
                sql: "\(ReconciliationSchema.itemSelect) WHERE i.run_id = ? AND i.sequence > ? ORDER BY i.sequence LIMIT ?",
                arguments: [run.description, after ?? 0, limit]
            ).map(Self.item)
        }
    }

    public func resolveReconciliationItem(
        of run: ReconciliationRunID, sequence: Int, note: String, at now: Date
    ) async throws -> OperatorResolutionOutcome {
        try await pool.write { db in
            try db.execute(
                sql: ReconciliationSchema.sqlite(ReconciliationSchema.resolveSQL),
                arguments: [run.description, sequence, note, SQLiteRows.millis(now)])
            let item = try Row.fetchOne(
                db, sql: "\(ReconciliationSchema.itemSelect) WHERE i.run_id = ? AND i.sequence = ?",
                arguments: [run.description, sequence]
            ).map(Self.item)
            return ReconciliationSchema.outcome(item, note: note)
        }
    }

    public func openReconciliationDifferences() async throws -> Int {
        try await pool.read { db in try Int.fetchOne(db, sql: ReconciliationSchema.openCountSQL) ?? 0 }
    }

    /// The reported differences, for the audit (inside its read transaction).
    static func reportedDifferences(_ db: Database) throws -> [ReconciliationItem] {
        try Row.fetchAll(db, sql: ReconciliationSchema.reportedSelect).map(item)
    }

    public func recordReconciliationItems(_ records: [ReconciliationRecord]) async throws -> [ReconciliationItem] {
        try await pool.write { db in
            try records.map { try Self.record($0, in: db) }
        }
    }

    private static func record(_ record: ReconciliationRecord, in db: Database) throws -> ReconciliationItem {
        var item = record.item
        if let heal = record.heal, item.resolution == .healed {
            switch heal {
            case .observe(let observation):
                if case .failure(let failure) = try Self.record(observation, in: db, at: item.at) {
                    item = ReconciliationSchema.refused(item, failure)
                }
            case .enqueue(let job):
                if try SQLiteJobs.insert(db, job, at: item.at).duplicate { item = ReconciliationSchema.underWay(item) }
            case .markFailed(let orderID, let paymentID):
                try db.cachedStatement(sql: ReconciliationSchema.sqlite(ReconciliationSchema.markFailedSQL)).execute(arguments: [
                    orderID.description, paymentID,
                ])
                if db.changesCount == 0 { item = ReconciliationSchema.changed(item) }
            }
        }
        try db.cachedStatement(
            sql: "INSERT INTO reconciliation_items (\(ReconciliationSchema.itemColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ).execute(arguments: [
            item.runID.description, item.sequence, item.kind.rawValue, item.resolution.rawValue, item.paymentID,
            item.orderID?.description, item.before, item.after, item.action, SQLiteRows.millis(item.at),
        ])
        return item
    }

    private static func arguments(_ run: ReconciliationRun) -> StatementArguments {
        [
            run.id.description, SQLiteRows.millis(run.from), SQLiteRows.millis(run.to), run.state.rawValue,
            SQLiteRows.millis(run.startedAt), run.finishedAt.map(SQLiteRows.millis), run.lines, run.matched, run.healed,
            run.underWay, run.reported, run.error,
        ]
    }

    private static func run(_ row: Row) throws -> ReconciliationRun {
        ReconciliationRun(
            id: try ReconciliationSchema.decode(ReconciliationRunID(row["id"] as String), "reconciliation_runs.id"),
            from: SQLiteRows.date(row["window_from"]), to: SQLiteRows.date(row["window_to"]),
            state: try ReconciliationSchema.decode(ReconciliationRun.State(rawValue: row["state"]), "reconciliation_runs.state"),
            startedAt: SQLiteRows.date(row["started_at"]), finishedAt: (row["finished_at"] as Int64?).map(SQLiteRows.date),
            lines: row["lines"], matched: row["matched"], healed: row["healed"], underWay: row["under_way"],
            reported: row["reported"], error: row["error"])
    }

    private static func item(_ row: Row) throws -> ReconciliationItem {
        ReconciliationItem(
            runID: try ReconciliationSchema.decode(ReconciliationRunID(row["run_id"] as String), "reconciliation_items.run_id"),
            sequence: row["sequence"],
            kind: try ReconciliationSchema.decode(DifferenceKind(rawValue: row["kind"]), "reconciliation_items.kind"),
            resolution: try ReconciliationSchema.decode(Resolution(rawValue: row["resolution"]), "reconciliation_items.resolution"),
            paymentID: row["payment_id"], orderID: (row["order_id"] as String?).flatMap(OrderID.init), before: row["books_before"],
            after: row["books_after"], action: row["action"], at: SQLiteRows.date(row["recorded_at"]),
            operatorResolution: try (row["resolved_on_run"] as String?).map { run in
                OperatorResolution(
                    runID: try ReconciliationSchema.decode(ReconciliationRunID(run), "reconciliation_resolutions.run_id"),
                    sequence: row["resolved_on_item"], note: row["resolution_note"], at: SQLiteRows.date(row["resolved_at"]))
            })
    }
}
