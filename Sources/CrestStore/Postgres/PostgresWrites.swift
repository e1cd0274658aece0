import CrestCore
import Foundation
import Logging
import PostgresNIO

/// Order changes inside a caller's transaction: locking, the state machine's arrows with their
/// stock moves and outbox events.
enum PostgresOrders {
    /// Locks the orders (in id order, the order every transaction of this store locks them in) and
    /// returns them by id; ids that name no order are absent.
    static func lock(_ ids: Set<OrderID>, on connection: PostgresConnection, logger: Logger) async throws
        -> [OrderID: Order]
    {
        guard !ids.isEmpty else { return [:] }
        let rows = try await connection.query(
            """
            SELECT \(unescaped: PostgresRows.orderColumns) FROM orders WHERE id = ANY(\(ids.map(\.description).sorted()))
            ORDER BY id FOR UPDATE
            """, logger: logger
        ).collect()
        var orders: [OrderID: Order] = [:]
        for row in rows {
            let order = try PostgresRows.order(row)
            orders[order.id] = order
        }
        return orders
    }

    /// Applies `event` to a locked `order`: status, stock and event, or the `confirm_after_cancel`
    /// flag for a payment that came too late.
    static func apply(
        _ event: Order.Event, to order: Order, on connection: PostgresConnection, at now: Date, logger: Logger
    ) async throws -> TransitionResult {
        var order = order
        let sale = order.saleID.description
        let transition = StoreRules.transition(event, of: order)
        if transition.change == .applied {
            if let (from, to) = transition.move {
                let moved = try await connection.query(
                    """
                    UPDATE sales SET \(unescaped: from) = \(unescaped: from) - \(order.quantity),
                        \(unescaped: to) = \(unescaped: to) + \(order.quantity), version = version + 1
                    WHERE id = \(sale) AND \(unescaped: from) >= \(order.quantity) RETURNING 1
                    """, logger: logger
                ).collect()
                guard moved.count == 1 else { throw CorruptRowError(column: "sales.\(from)") }
                if to == "available" { try await PostgresNotices.stockReleased(order.saleID, on: connection, logger: logger) }
            }
            order.status = transition.target
            order.updatedAt = now
            try await connection.query(
                """
                UPDATE orders SET status = \(transition.target.rawValue), updated_at = \(PostgresRows.millis(now))
                WHERE id = \(order.id.description)
                """, logger: logger)
            try await PostgresEvents.appendNext(OrderEvent.Kind(event), of: order, at: now, on: connection, logger: logger)
        }
        if transition.flagsLateConfirm {
            let lateConfirm = OrderFlag(reason: .confirmAfterCancel, flaggedAt: now)
            try await connection.query(
                """
                UPDATE orders SET flag = \(lateConfirm.reason.rawValue), flagged_at = \(PostgresRows.millis(now))
                WHERE id = \(order.id.description)
                """, logger: logger)
            order.flag = lateConfirm
        }
        guard
            let row = try await connection.query(
                "SELECT total, available, reserved, sold, version FROM sales WHERE id = \(sale)", logger: logger
            ).collect().first
        else { throw CorruptRowError(column: "orders.sale_id") }
        return TransitionResult(order: order, change: transition.change, counters: try PostgresRows.snapshot(row))
    }
}

/// The outbox: one `order_events` row per order change, inside the change's transaction, and a
/// delivery (row and job) for each merchant endpoint that wants it.
enum PostgresEvents {
    static func append(
        _ kind: OrderEvent.Kind, of order: Order, sequence: Int, at time: Date, endpoints: [WebhookEndpoint],
        on connection: PostgresConnection, logger: Logger
    ) async throws {
        try await connection.query(
            """
            INSERT INTO order_events (\(unescaped: PostgresRows.eventColumns))
            VALUES (\(EventID.make(now: time).description), \(order.id.description), \(order.saleID.description),
                \(sequence), \(kind.rawValue), \(PostgresRows.millis(time)))
            """, logger: logger)
        for endpoint in endpoints where endpoint.wants(kind) {
            let delivery = WebhookJobs.Delivery(endpointId: endpoint.id, orderId: order.id, sequence: sequence)
            try await connection.query(
                """
                INSERT INTO webhook_deliveries (endpoint_id, order_id, sequence)
                VALUES (\(endpoint.id.description), \(order.id.description), \(sequence))
                """, logger: logger)
            try await PostgresJobs.insert(WebhookJobs.delivery(delivery), at: time, on: connection, logger: logger)
        }
    }

    /// Appends an event after the order's last one (the caller holds the order's row lock).
    static func appendNext(
        _ kind: OrderEvent.Kind, of order: Order, at time: Date, on connection: PostgresConnection, logger: Logger
    ) async throws {
        let last = try await connection.query(
            "SELECT COALESCE(MAX(sequence), 0)::bigint FROM order_events WHERE order_id = \(order.id.description)",
            logger: logger
        ).values(Int64.self).first ?? 0
        try await append(
            kind, of: order, sequence: Int(last) + 1, at: time,
            endpoints: try await activeEndpoints(on: connection, logger: logger), on: connection, logger: logger)
    }

    static func activeEndpoints(on connection: PostgresConnection, logger: Logger) async throws -> [WebhookEndpoint] {
        try await connection.query(activeEndpointsQuery, logger: logger).collect().map(PostgresRows.endpoint)
    }

    static var activeEndpointsQuery: PostgresQuery {
        "SELECT \(unescaped: PostgresRows.endpointColumns) FROM webhook_endpoints WHERE deleted_at IS NULL"
    }
}

/// Job rows: inserting (honouring unique keys) from any transaction that needs a job.
enum PostgresJobs {
    static let liveStates = "('scheduled', 'available', 'running', 'retryable')"

    @discardableResult
    static func insert(_ job: NewJob, at now: Date, on connection: PostgresConnection, logger: Logger) async throws
        -> EnqueuedJob
    {
        let runAt = max(job.runAt ?? now, now)
        let state: Job.State = runAt > now ? .scheduled : .available
        let inserted = try await connection.query(
            """
            INSERT INTO jobs (kind, payload, state, max_attempts, run_at, unique_key, created_at)
            VALUES (\(job.kind), \(job.payload), \(state.rawValue), \(job.maxAttempts),
                \(PostgresRows.millis(job.runAt ?? now)), \(job.uniqueKey), \(PostgresRows.millis(now)))
            ON CONFLICT DO NOTHING RETURNING id
            """, logger: logger
        ).values(Int64.self).first
        if let inserted {
            try await PostgresNotices.jobsDue(at: runAt, on: connection, logger: logger)
            return EnqueuedJob(id: JobID(inserted), duplicate: false)
        }
        guard
            let key = job.uniqueKey,
            let existing = try await connection.query(
                "SELECT id FROM jobs WHERE unique_key = \(key) AND state IN \(unescaped: liveStates)", logger: logger
            ).values(Int64.self).first
        else { throw CorruptRowError(column: "jobs.unique_key") }
        return EnqueuedJob(id: JobID(existing), duplicate: true)
    }
}
