import CrestCore
import Foundation
import PostgresNIO

/// The event feed on several nodes.
///
/// An event cannot take its feed position when it is written: with concurrent transactions, one
/// that took position 7 may commit after another took 8, and a consumer reading 8 in between
/// would resume past 7 and never see it (the outbox's classic gap). So events are written
/// without a position, and take one after they committed: `positionNewEvents` numbers every
/// committed event that has none, continuing from the feed's head, in one transaction that holds
/// the head's row lock. Those transactions take turns, each sees every commit before it, and an
/// event committed later is numbered by a later one, above every position already read. An
/// order's event is committed only after its earlier ones (its sequence is read from them), so
/// it is numbered after them too.
extension PostgresStore {
    /// How many events one positioning transaction numbers at most (a long backlog takes several).
    static var positioningStep: Int { 5_000 }

    public func eventFeed(after: Int64, limit: Int) async throws -> EventFeedPage {
        try await positionNewEvents()
        return try await withConnection { connection in
            let events = try await connection.query(
                """
                SELECT \(unescaped: PostgresRows.eventColumns), feed_position FROM order_events
                WHERE feed_position > \(after) ORDER BY feed_position LIMIT \(limit)
                """, logger: self.logger
            ).collect().map { row in
                FeedEvent(
                    position: try row.makeRandomAccess()["feed_position"].decode(Int64.self),
                    event: try PostgresRows.event(row))
            }
            // Read after the events: the head is never below a position just read.
            let head =
                try await connection.query("SELECT head FROM event_feed", logger: self.logger)
                .collect().first?.decode(Int64.self) ?? 0
            return EventFeedPage(events: events, head: head)
        }
    }

    /// Numbers the committed events that have no feed position yet, a step at a time, each
    /// order's in sequence order. Cheap when there are none (a look at a partial index).
    func positionNewEvents() async throws {
        while try await hasUnpositionedEvents() {
            let numbered = try await transaction { connection in
                // The lock first, in a statement of its own: the next one's snapshot then sees
                // everything the previous positioning committed.
                let head =
                    try await connection.query("SELECT head FROM event_feed FOR UPDATE", logger: self.logger)
                    .collect().first?.decode(Int64.self) ?? 0
                let rows = try await connection.query(
                    """
                    WITH picked AS (
                        SELECT order_id, sequence FROM order_events WHERE feed_position IS NULL
                        ORDER BY order_id, sequence LIMIT \(Self.positioningStep)
                    ),
                    numbered AS (
                        SELECT order_id, sequence, row_number() OVER (ORDER BY order_id, sequence) AS offset_from_head
                        FROM picked
                    ),
                    positioned AS (
                        UPDATE order_events AS e SET feed_position = \(head) + n.offset_from_head
                        FROM numbered AS n
                        WHERE e.order_id = n.order_id AND e.sequence = n.sequence AND e.feed_position IS NULL
                        RETURNING 1
                    )
                    UPDATE event_feed SET head = head + (SELECT count(*) FROM positioned)
                    RETURNING (SELECT count(*) FROM positioned)
                    """, logger: self.logger
                ).collect()
                return try rows.first?.decode(Int64.self) ?? 0
            }
            if numbered == 0 { return }
        }
    }

    private func hasUnpositionedEvents() async throws -> Bool {
        try await rows("SELECT EXISTS (SELECT 1 FROM order_events WHERE feed_position IS NULL)")
            .first?.decode(Bool.self) ?? false
    }
}
