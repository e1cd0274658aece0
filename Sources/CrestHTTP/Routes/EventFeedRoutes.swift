import CrestCore
import CrestEngine
import Hummingbird

/// `GET /v1/events?after=<cursor>&limit=…` (admin token): every order event, for a downstream
/// system that collects them all. Each event has a cursor; a consumer keeps the last one it
/// processed and resumes after it, and then receives every later event once, in the feed's order
/// (an order's events in their sequence), across restarts and nodes.
struct EventFeedRoutes {
    let engine: Engine

    func add(to router: Router<CrestRequestContext>, admin: AdminAuthMiddleware<CrestRequestContext>) {
        router.group("v1/events")
            .add(middleware: admin)
            .get(use: feed)
    }

    @Sendable func feed(_ request: Request, context: CrestRequestContext) async throws -> EventFeedBody {
        var issues: [ValidationError.Issue] = []
        let query = PageQuery(request, cursor: FeedCursor.init, cursorMeaning: "a cursor from this feed", issues: &issues)
        guard issues.isEmpty else { throw ValidationError(issues: issues) }
        let after = query.after ?? FeedCursor(position: 0)
        let page = try await engine.eventFeed(after: after.position, limit: query.limit)
        // A cursor the feed never gave (another deployment's, or made up) would silently skip
        // every event up to it once the feed grows: refused rather than answered empty.
        guard after.position <= page.head else {
            throw ValidationError(field: "after", message: "is past the end of this feed: not a cursor it gave")
        }
        let next = page.events.last.map { FeedCursor(position: $0.position) } ?? after
        return EventFeedBody(
            events: page.events.map(FeedEventBody.init), nextCursor: next, remaining: page.head - next.position)
    }
}

/// A place in the event feed, as consumers see it: an opaque string (today the position).
struct FeedCursor: Codable, Hashable, CustomStringConvertible {
    var position: Int64

    init(position: Int64) { self.position = position }

    init?(_ text: String) {
        guard text.count <= 19, text.allSatisfy(\.isASCII), let position = Int64(text), position >= 0 else {
            return nil
        }
        self.position = position
    }

    var description: String { String(position) }

    init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let cursor = FeedCursor(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a feed cursor"))
        }
        self = cursor
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// An event of the feed: the event's fields and its cursor.
struct FeedEventBody: Codable {
    var event: EventBody
    var cursor: FeedCursor

    init(_ feedEvent: FeedEvent) {
        event = EventBody(feedEvent.event)
        cursor = FeedCursor(position: feedEvent.position)
    }

    private enum CodingKeys: String, CodingKey { case cursor }

    init(from decoder: any Decoder) throws {
        event = try EventBody(from: decoder)
        cursor = try decoder.container(keyedBy: CodingKeys.self).decode(FeedCursor.self, forKey: .cursor)
    }

    func encode(to encoder: any Encoder) throws {
        try event.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(cursor, forKey: .cursor)
    }
}

struct EventFeedBody: Codable, ResponseEncodable {
    var events: [FeedEventBody]
    /// The cursor to resume after: the last event's, or the one asked with when there was none.
    var nextCursor: FeedCursor
    /// Events after `nextCursor` at the time of the read: keep reading while it is above 0.
    var remaining: Int64
}
