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
    ///
    /// Every statement of the change, and the read of the counters after it, travel in one
    /// pipeline (see `PostgresPipeline`): one wait for the server per change (two when a merchant
    /// endpoint wants the event), where each statement used to be one. The caller commits after
    /// this returns, so a failure found in the answers still rolls the whole change back.
    static func apply(
        _ event: Order.Event, to order: Order, on connection: PostgresConnection, at now: Date, logger: Logger
    ) async throws -> TransitionResult {
        var order = order
        let sale = order.saleID.description
        let transition = StoreRules.transition(event, of: order)
        var writes = PostgresPipeline(on: connection, logger: logger)
        var moved: (statement: Int, column: String)?
        var appended: (event: Int, endpoints: Int)?
        if transition.change == .applied {
            if let (from, to) = transition.move {
                let statement = writes.send(
                    """
                    UPDATE sales SET \(unescaped: from) = \(unescaped: from) - \(order.quantity),
                        \(unescaped: to) = \(unescaped: to) + \(order.quantity), version = version + 1
                    WHERE id = \(sale) AND \(unescaped: from) >= \(order.quantity) RETURNING 1
                    """)
                moved = (statement, from)
                if to == "available" { writes.send(PostgresNotices.stockReleasedQuery(order.saleID)) }
            }
            order.status = transition.target
            order.updatedAt = now
            writes.send(
                """
                UPDATE orders SET status = \(transition.target.rawValue), updated_at = \(PostgresRows.millis(now))
                WHERE id = \(order.id.description)
                """)
            // After the order's last event (the caller holds the order's row lock).
            let inserted = writes.send(
                """
                INSERT INTO order_events (\(unescaped: PostgresRows.eventColumns))
                SELECT \(EventID.make(now: now).description), \(order.id.description), \(sale),
                    COALESCE(MAX(sequence), 0) + 1, \(OrderEvent.Kind(event).rawValue), \(PostgresRows.millis(now))
                FROM order_events WHERE order_id = \(order.id.description)
                RETURNING sequence
                """)
            appended = (inserted, writes.send(PostgresEvents.activeEndpointsQuery))
        }
        if transition.flagsLateConfirm {
            let lateConfirm = OrderFlag(reason: .confirmAfterCancel, flaggedAt: now)
            writes.send(
                """
                UPDATE orders SET flag = \(lateConfirm.reason.rawValue), flagged_at = \(PostgresRows.millis(now))
                WHERE id = \(order.id.description)
                """)
            order.flag = lateConfirm
        }
        let counters = writes.send("SELECT total, available, reserved, sold, version FROM sales WHERE id = \(sale)")
        let rows = try await writes.answers().get()
        if let moved, rows[moved.statement].count != 1 { throw CorruptRowError(column: "sales.\(moved.column)") }
        if let appended {
            guard let sequence = try rows[appended.event].first?.decode(Int.self) else {
                throw CorruptRowError(column: "order_events.sequence")
            }
            try await PostgresEvents.deliver(
                OrderEvent.Kind(event), of: order, sequence: sequence, at: now,
                to: try rows[appended.endpoints].map(PostgresRows.endpoint), on: connection, logger: logger)
        }
        guard let row = rows[counters].first else { throw CorruptRowError(column: "orders.sale_id") }
        let snapshot = try PostgresRows.snapshot(row)
        // Pair of the table's CHECKs: the counters read back after the move are conserved.
        precondition(snapshot.counters.isConserved, "sale \(order.saleID) not conserved after \(event): \(snapshot.counters)")
        return TransitionResult(order: order, change: transition.change, counters: snapshot)
    }
}
