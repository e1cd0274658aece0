import CrestCore
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

@Suite("The event feed route")
struct EventFeedTests {
    @Test("a consumer pages through every event with its cursors, and resumes after the last one it kept")
    func pagesAndResumes() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                let sale = try await client.createSale(stock: 5)
                var orders: [String] = []
                for buyer in ["ana", "bob", "cy"] {
                    let placed = try await client.placeOrder(sale: sale, key: "k-\(buyer)", buyer: buyer)
                    orders.append(try #require(placed.object["id"] as? String))
                }
                try await client.execute(
                    uri: "/v1/orders/\(orders[1])/cancel", method: .post, headers: try await HTTPFixture.buyerHeaders("bob")
                ) { #expect($0.status == .ok) }

                var read: [[String: Any]] = []
                var cursor: String?
                var remaining: [Int] = []
                while true {
                    let page = try await client.execute(
                        uri: "/v1/events?limit=3" + (cursor.map { "&after=\($0)" } ?? ""), method: .get,
                        headers: HTTPFixture.adminHeaders
                    ) { $0 }
                    #expect(page.status == .ok, "\(String(buffer: page.body))")
                    let events = try #require(page.object["events"] as? [[String: Any]])
                    let next = try #require(page.object["nextCursor"] as? String)
                    if events.isEmpty {
                        #expect(next == cursor, "an empty page gives back the cursor it was asked with")
                        break
                    }
                    #expect(next == events.last?["cursor"] as? String)
                    remaining.append(try #require(page.object["remaining"] as? Int))
                    read += events
                    cursor = next
                }
                #expect(remaining == [1, 0])
                #expect(read.map { $0["type"] as? String } == ["order.created", "order.created", "order.created", "order.cancelled"])
                #expect(read.map { $0["orderId"] as? String } == orders + [orders[1]])
                #expect(Set(read.compactMap { $0["id"] as? String }).count == 4)
                #expect(read.allSatisfy { $0["saleId"] as? String == sale && $0["occurredAt"] is String })

                // Resuming after the second event gives the third and the fourth.
                let second = try #require(read[1]["cursor"] as? String)
                try await client.execute(uri: "/v1/events?after=\(second)", method: .get, headers: HTTPFixture.adminHeaders) {
                    let events = $0.object["events"] as? [[String: Any]] ?? []
                    #expect(events.map { $0["id"] as? String } == read.dropFirst(2).map { $0["id"] as? String })
                }
            }
        }
    }

    @Test("operators only; a malformed cursor, one past the feed's end and a bad limit are 400")
    func badInput() async throws {
        try await HTTPFixture.with { fixture in
            try await fixture.app.test(.router) { client in
                try await client.execute(uri: "/v1/events", method: .get) { $0.expectProblem(.unauthorized, "unauthorized") }
                try await client.execute(
                    uri: "/v1/events", method: .get, headers: try await HTTPFixture.buyerHeaders("ana")
                ) { $0.expectProblem(.unauthorized, "unauthorized") }
                for query in ["after=abc", "after=-1", "after=1", "after=99999999999999999999", "limit=0", "limit=201"] {
                    try await client.execute(uri: "/v1/events?\(query)", method: .get, headers: HTTPFixture.adminHeaders) {
                        $0.expectProblem(.badRequest, "invalid-request")
                    }
                }
                try await client.execute(uri: "/v1/events?after=0", method: .get, headers: HTTPFixture.adminHeaders) {
                    #expect($0.status == .ok)
                    #expect($0.object["nextCursor"] as? String == "0" && $0.object["remaining"] as? Int == 0)
                }
            }
        }
    }
}
