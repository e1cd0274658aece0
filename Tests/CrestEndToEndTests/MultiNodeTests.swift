import AsyncHTTPClient
import CrestTestSupport
import Foundation
import NIOHTTP1
import Testing

/// Several `crest serve` processes on one PostgreSQL database, as behind a load balancer.
@Suite("Three nodes on one PostgreSQL")
struct MultiNodeTests {
    @Test("orders spread over three processes: exactly the stock, one per buyer; each expiry runs once; every node sells what came back")
    func threeNodes() async throws {
        guard let cluster = try await PostgresCluster.shared() else { return }
        let url = try cluster.createDatabase()
        let directories = (0..<3).map { _ in
            FileManager.default.temporaryDirectory.appending(path: "crest-node-\(UUID().uuidString)")
        }
        defer { for directory in directories { try? FileManager.default.removeItem(at: directory) } }
        var nodes: [CrestProcess] = []
        for directory in directories {
            nodes.append(try await CrestProcess(dataDirectory: directory, extraArguments: ["--database-url", url]))
        }
        let clients = nodes.map { CrestClient(http: .shared, port: $0.port) }
        // The window outlasts the crowd even on a loaded machine, so no unit is sold twice here.
        let sale = try await clients[0].createSale(stock: 60, adminToken: CrestProcess.adminToken, paymentWindowSeconds: 15)

        // 300 attempts from 200 buyers, each attempt to the next node in turn, 24 at a time.
        let answers = await concurrently(300, width: 24) { i in
            let answer = try? await clients[i % 3].order(sale: sale, key: "k\(i)", buyer: "b\(i % 200)")
            return (status: answer?.status ?? 0, id: answer?.id, buyer: "b\(i % 200)")
        }
        let placed = answers.filter { $0.status == 201 }
        #expect(placed.count == 60, "\(Dictionary(grouping: answers, by: \.status).mapValues(\.count))")
        #expect(Set(placed.map(\.buyer)).count == placed.count)
        #expect(answers.allSatisfy { [201, 409].contains($0.status) })
        for client in clients {
            #expect(try await client.stock(sale: sale) == ["total": 60, "available": 0, "reserved": 60, "sold": 0])
        }

        // Unpaid, every order expires after 15 s; some node's runner takes each expiry, once.
        let back = try await eventually(timeout: .seconds(60)) {
            try await clients[1].stock(sale: sale)["available"] == 60
        }
        let counters = try await clients[1].stock(sale: sale)
        #expect(back, "\(counters)")
        for order in placed.compactMap(\.id) {
            let events = try await clients[2].call(.GET, "/v1/orders/\(order)/events").json["events"] as? [[String: Any]]
            #expect(events?.compactMap { $0["type"] as? String } == ["order.created", "order.expired"])
        }
        let admin = [("Authorization", "Bearer \(CrestProcess.adminToken)")]
        let expiries = try await clients[0].call(.GET, "/v1/jobs?kind=order.expire&limit=200", headers: admin)
            .json["jobs"] as? [[String: Any]] ?? []
        #expect(expiries.count == 60)
        #expect(expiries.allSatisfy { $0["state"] as? String == "completed" && $0["attempt"] as? Int == 1 }, "\(expiries.prefix(3))")

        // Every node answered "sold out" from memory; each hears that the stock came back.
        for (index, client) in clients.enumerated() {
            let answer = try await client.order(sale: sale, key: "again-\(index)", buyer: "late-\(index)")
            #expect(answer.status == 201, "node \(index): \(answer.status) \(answer.problemType ?? "")")
        }
        for node in nodes { _ = node.stop() }
    }
}
