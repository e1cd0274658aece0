import CrestCore
import Foundation
import PostgresNIO

extension PostgresStore {
    public func ordersWithPayment(createdFrom from: Date, to: Date) async throws -> [Order] {
        try await rows(
            """
            SELECT \(unescaped: PostgresRows.orderColumns) FROM orders
            WHERE payment_id IS NOT NULL AND created_at >= \(PostgresRows.millis(from)) AND created_at < \(PostgresRows.millis(to))
            ORDER BY id
            """, answerTimeout: bulkReadTimeout
        ).map(PostgresRows.order)
    }

    public func createReconciliationRun(_ run: ReconciliationRun) async throws {
        _ = try await rows(
            """
            INSERT INTO reconciliation_runs (\(unescaped: ReconciliationSchema.runColumns))
            VALUES (\(run.id.description), \(PostgresRows.millis(run.from)), \(PostgresRows.millis(run.to)), \(run.state.rawValue),
                \(PostgresRows.millis(run.startedAt)), \(run.finishedAt.map(PostgresRows.millis)), \(run.lines), \(run.matched),
                \(run.healed), \(run.underWay), \(run.reported), \(run.error))
            """)
    }

    public func updateReconciliationRun(_ run: ReconciliationRun) async throws {
        _ = try await rows(
            """
            UPDATE reconciliation_runs SET state = \(run.state.rawValue), finished_at = \(run.finishedAt.map(PostgresRows.millis)),
                lines = \(run.lines), matched = \(run.matched), healed = \(run.healed), under_way = \(run.underWay),
                reported = \(run.reported),
                error = \(run.error)
            WHERE id = \(run.id.description)
            """)
    }

    public func reconciliationRun(_ id: ReconciliationRunID) async throws -> ReconciliationRun? {
        try await rows(
            "SELECT \(unescaped: ReconciliationSchema.runColumns) FROM reconciliation_runs WHERE id = \(id.description)"
        ).first.map(Self.run)
    }

    public func reconciliationRuns(after: ReconciliationRunID?, limit: Int) async throws -> [ReconciliationRun] {
        let after = after?.description
        return try await rows(
            """
            SELECT \(unescaped: ReconciliationSchema.runColumns) FROM reconciliation_runs
            WHERE \(after)::text IS NULL OR id < \(after) ORDER BY id DESC LIMIT \(limit)
            """
        ).map(Self.run)
    }

    public func reconciliationItems(of run: ReconciliationRunID, after: Int?, limit: Int) async throws -> [ReconciliationItem] {
        try await rows(
            """
            \(unescaped: ReconciliationSchema.itemSelect)
            WHERE i.run_id = \(run.description) AND i.sequence > \(after ?? 0) ORDER BY i.sequence LIMIT \(limit)
            """
        ).map(Self.item)
    }

    public func resolveReconciliationItem(
        of run: ReconciliationRunID, sequence: Int, note: String, at now: Date
    ) async throws -> OperatorResolutionOutcome {
        try await transaction { connection in
            var insert = PostgresQuery(unsafeSQL: ReconciliationSchema.resolveSQL)
            insert.binds.append(run.description, context: .default)
            insert.binds.append(Int64(sequence), context: .default)
            insert.binds.append(note, context: .default)
            insert.binds.append(PostgresRows.millis(now), context: .default)
            try await connection.query(insert, logger: self.logger)
            let item = try await connection.query(
                """
                \(unescaped: ReconciliationSchema.itemSelect)
                WHERE i.run_id = \(run.description) AND i.sequence = \(sequence)
                """, logger: self.logger
            ).collect().first.map(Self.item)
            return ReconciliationSchema.outcome(item, note: note)
        }
    }

    public func openReconciliationDifferences() async throws -> Int {
        let row = try await rows(PostgresQuery(unsafeSQL: ReconciliationSchema.openCountSQL)).first
        return Int(try row?.decode(Int64.self) ?? 0)
    }

    /// The reported differences, for the audit (inside its read transaction).
    static func reportedDifferences(on connection: PostgresConnection, logger: Logger) async throws -> [ReconciliationItem] {
        try await connection.query(PostgresQuery(unsafeSQL: ReconciliationSchema.reportedSelect), logger: logger).collect()
            .map(item)
    }

    public func recordReconciliationItems(_ records: [ReconciliationRecord]) async throws -> [ReconciliationItem] {
        try await transaction { connection in
            var recorded: [ReconciliationItem] = []
            for record in records { recorded.append(try await self.record(record, on: connection)) }
            return recorded
        }
    }

    private func record(_ record: ReconciliationRecord, on connection: PostgresConnection) async throws -> ReconciliationItem {
        var item = record.item
        if let heal = record.heal, item.resolution == .healed {
            switch heal {
            case .observe(let observation):
                let orders = try await PostgresOrders.lock([observation.orderID], on: connection, logger: logger)
                let result = try await self.record(observation, order: orders[observation.orderID], on: connection, at: item.at)
                if case .failure(let failure) = result { item = ReconciliationSchema.refused(item, failure) }
            case .enqueue(let job):
                if try await PostgresJobs.insert(job, at: item.at, on: connection, logger: logger).duplicate {
                    item = ReconciliationSchema.underWay(item)
                }
            case .markFailed(let orderID, let paymentID):
                var query = PostgresQuery(unsafeSQL: ReconciliationSchema.markFailedSQL + " RETURNING 1")
                query.binds.append(orderID.description, context: .default)
                query.binds.append(paymentID, context: .default)
                if try await connection.query(query, logger: logger).collect().isEmpty {
                    item = ReconciliationSchema.changed(item)
                }
            }
        }
        try await connection.query(
            """
            INSERT INTO reconciliation_items (\(unescaped: ReconciliationSchema.itemColumns))
            VALUES (\(item.runID.description), \(item.sequence), \(item.kind.rawValue), \(item.resolution.rawValue),
                \(item.paymentID), \(item.orderID?.description), \(item.before), \(item.after), \(item.action),
                \(PostgresRows.millis(item.at)))
            """, logger: logger)
        return item
    }

    private static func run(_ row: PostgresRow) throws -> ReconciliationRun {
        let r = row.makeRandomAccess()
        return ReconciliationRun(
            id: try ReconciliationSchema.decode(ReconciliationRunID(try r["id"].decode(String.self)), "reconciliation_runs.id"),
            from: PostgresRows.date(try r["window_from"].decode(Int64.self)),
            to: PostgresRows.date(try r["window_to"].decode(Int64.self)),
            state: try ReconciliationSchema.decode(
                ReconciliationRun.State(rawValue: try r["state"].decode(String.self)), "reconciliation_runs.state"),
            startedAt: PostgresRows.date(try r["started_at"].decode(Int64.self)),
            finishedAt: try r["finished_at"].decode(Int64?.self).map(PostgresRows.date),
            lines: Int(try r["lines"].decode(Int64.self)), matched: Int(try r["matched"].decode(Int64.self)),
            healed: Int(try r["healed"].decode(Int64.self)), underWay: Int(try r["under_way"].decode(Int64.self)),
            reported: Int(try r["reported"].decode(Int64.self)),
            error: try r["error"].decode(String?.self))
    }

    private static func item(_ row: PostgresRow) throws -> ReconciliationItem {
        let r = row.makeRandomAccess()
        return ReconciliationItem(
            runID: try ReconciliationSchema.decode(
                ReconciliationRunID(try r["run_id"].decode(String.self)), "reconciliation_items.run_id"),
            sequence: Int(try r["sequence"].decode(Int64.self)),
            kind: try ReconciliationSchema.decode(DifferenceKind(rawValue: try r["kind"].decode(String.self)), "reconciliation_items.kind"),
            resolution: try ReconciliationSchema.decode(
                Resolution(rawValue: try r["resolution"].decode(String.self)), "reconciliation_items.resolution"),
            paymentID: try r["payment_id"].decode(String.self),
            orderID: try r["order_id"].decode(String?.self).flatMap(OrderID.init),
            before: try r["books_before"].decode(String.self), after: try r["books_after"].decode(String.self),
            action: try r["action"].decode(String.self), at: PostgresRows.date(try r["recorded_at"].decode(Int64.self)),
            operatorResolution: try r["resolved_on_run"].decode(String?.self).map { run in
                OperatorResolution(
                    runID: try ReconciliationSchema.decode(ReconciliationRunID(run), "reconciliation_resolutions.run_id"),
                    sequence: Int(try r["resolved_on_item"].decode(Int64.self)), note: try r["resolution_note"].decode(String.self),
                    at: PostgresRows.date(try r["resolved_at"].decode(Int64.self)))
            })
    }
}
