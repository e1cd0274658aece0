import AsyncHTTPClient
import CrestTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// Several `crest serve` processes on one PostgreSQL database, as behind a load balancer.
@Suite("Three nodes on one PostgreSQL", .serialized)
struct MultiNodeTests {
    @Test("orders spread over three processes: exactly the stock, one per buyer; each expiry runs once; every node sells what came back")
    func threeNodes() async throws {
        guard let cluster = try await PostgresCluster.shared() else { return }
        let url = try await cluster.createDatabase()
        let directories = Self.dataDirectories()
        defer { for directory in directories { try? FileManager.default.removeItem(at: directory) } }
        let nodes = try await Self.start(on: directories, ["--database-url", url])
        let clients = nodes.map { CrestClient(http: .crest, port: $0.port) }
        // The window outlasts the crowd and the reads after it even on a loaded machine, so no unit
        // is sold twice here (with 15 s, the crowd beside the whole suite once left the reads after
        // the first orders' expiry).
        let sale = try await clients[0].createSale(stock: 60, adminToken: CrestProcess.adminToken, paymentWindowSeconds: 30)

        // 300 attempts from 200 buyers, each attempt to the next node in turn, 24 at a time.
        var answers = await concurrently(300, width: 24) { i in
            let answer = try? await clients[i % 3].order(sale: sale, key: "k\(i)", buyer: "b\(i % 200)")
            return (index: i, status: answer?.status ?? 0, id: answer?.id, buyer: "b\(i % 200)")
        }
        // On a loaded machine a node may shed an attempt (503 with Retry-After) or not answer in
        // time: the client sends it again with the same key, as the API asks, until its fate is
        // known — a second order never comes of it.
        for _ in 0..<20 where answers.contains(where: { ![201, 409].contains($0.status) }) {
            try await Task.sleep(for: .seconds(1))
            for (position, answer) in answers.enumerated() where ![201, 409].contains(answer.status) {
                let i = answer.index
                let again = try? await clients[i % 3].order(sale: sale, key: "k\(i)", buyer: answer.buyer)
                answers[position] = (i, again?.status ?? 0, again?.id, answer.buyer)
            }
        }
        let placed = answers.filter { $0.status == 201 }
        #expect(placed.count == 60, "\(Dictionary(grouping: answers, by: \.status).mapValues(\.count))")
        #expect(Set(placed.map(\.buyer)).count == placed.count)
        #expect(answers.allSatisfy { [201, 409].contains($0.status) })
        for client in clients {
            let counters = try await client.stock(sale: sale)
            #expect(counters == ["total": 60, "available": 0, "reserved": 60, "sold": 0], "\(counters)")
        }
        // One buyer pass, accepted by every node: its order reads everywhere, and to another buyer
        // it does not exist anywhere.
        let first = try #require(placed.first)
        let owner = [try await CrestClient.passHeader(for: first.buyer)]
        let stranger = [try await CrestClient.passHeader(for: "someone-else")]
        for client in clients {
            let id = try #require(first.id)
            #expect(try await client.call(.GET, "/v1/orders/\(id)", headers: owner).status == 200)
            #expect(try await client.call(.GET, "/v1/orders/\(id)", headers: stranger).status == 404)
        }

        // Unpaid, every order expires after 30 s; some node's runner takes each expiry, once.
        let back = try await eventually(timeout: .seconds(90)) {
            try await clients[1].stock(sale: sale)["available"] == 60
        }
        let counters = try await clients[1].stock(sale: sale)
        #expect(back, "\(counters)")
        for order in placed.compactMap(\.id) {
            let events =
                try await clients[2].call(.GET, "/v1/orders/\(order)/events", headers: CrestClient.admin).json["events"] as? [[String: Any]]
            #expect(events?.compactMap { $0["type"] as? String } == ["order.created", "order.expired"])
        }
        let admin = [("Authorization", "Bearer \(CrestProcess.adminToken)")]
        // The orders' expiries are their batches' jobs: each order in one of them, each run once.
        let expiries =
            try await clients[0].call(.GET, "/v1/jobs?kind=order.expire-batch&limit=200", headers: admin)
            .json["jobs"] as? [[String: Any]] ?? []
        let expiring = expiries.flatMap { ($0["payload"] as? [String: Any])?["orderIds"] as? [String] ?? [] }
        #expect(expiring.sorted() == placed.compactMap(\.id).sorted())
        #expect(expiries.allSatisfy { $0["state"] as? String == "completed" && $0["attempt"] as? Int == 1 }, "\(expiries.prefix(3))")
        let single = try await clients[0].call(.GET, "/v1/jobs?kind=order.expire", headers: admin).json["jobs"] as? [Any]
        #expect(single?.isEmpty == true, "no order needed a job of its own")

        // Every node answered "sold out" from memory; each hears that the stock came back.
        for (index, client) in clients.enumerated() {
            let answer = try await client.order(sale: sale, key: "again-\(index)", buyer: "late-\(index)")
            #expect(answer.status == 201, "node \(index): \(answer.status) \(answer.problemType ?? "")")
        }
        for node in nodes { _ = await node.stop() }
    }

    @Test("kill -9 one node mid-sale: its answered orders are all there, the others rescue its leased jobs, stock adds up")
    func killOneNode() async throws {
        guard let cluster = try await PostgresCluster.shared() else { return }
        let url = try await cluster.createDatabase()
        let directories = Self.dataDirectories()
        defer { for directory in directories { try? FileManager.default.removeItem(at: directory) } }
        // Short leases so that the survivors rescue soon; two workers per node so that a backlog of
        // due expiries keeps every node's workers busy for a while.
        let nodes = try await Self.start(
            on: directories, ["--database-url", url, "--job-lease-seconds", "2", "--job-workers", "2"])
        let victim = nodes[0]
        let clients = nodes.map { CrestClient(http: .crest, port: $0.port) }
        let stock = 10_000
        let sale = try await clients[1].createSale(stock: stock, adminToken: CrestProcess.adminToken, paymentWindowSeconds: 2)

        // A crowd spread over the three nodes; orders expire 2 s after they are placed, so the
        // nodes run expiry jobs while the crowd still buys.
        // Once the victim is dead its share is not sent (the HTTP client would retry connecting
        // until each request's deadline).
        let victimDead = Locked(false)
        let victimPlaced = Locked(0)
        let crowd = Task {
            await concurrently(3_000, width: 12) { i in
                if i % 3 == 0, victimDead.value { return (node: 0, status: -1, id: String?.none) }
                let answer = try? await clients[i % 3].order(sale: sale, key: "k\(i)", buyer: "b\(i)", timeout: .seconds(5))
                if i % 3 == 0, answer?.status == 201 { victimPlaced.withLock { $0 += 1 } }
                return (node: i % 3, status: answer?.status ?? 0, id: answer?.id)
            }
        }
        // The victim dies while it holds leases on running expiry jobs.
        let victimJobs = """
            SELECT id FROM jobs WHERE state = 'running' AND leased_by LIKE '%/\(victim.process.processIdentifier)/%'
            """
        // The victim is frozen (SIGSTOP) before the last look, so what it holds cannot change
        // between the look and the kill: a job seen running is still leased by it when it dies.
        // Holding none, it is let go on (SIGCONT) and looked at again. It is frozen only once a
        // look without freezing saw it hold a job: a frozen victim may hold the sale's row, and
        // with it every other node's batches (frozen for each look, it was seen to hold them past
        // the crowd's 5 s deadline on a loaded machine).
        var held: [String] = []
        // Not before the victim answered orders of its own (on a loaded machine its first answers
        // can come late): they are what must survive it.
        let killed = try await eventually(timeout: .seconds(40), every: .milliseconds(5)) {
            guard victimPlaced.value > 0, try await !cluster.psql(url, victimJobs).isEmpty else { return false }
            Foundation.kill(victim.process.processIdentifier, SIGSTOP)
            held = try await cluster.psql(url, victimJobs).map { $0[0] }
            guard !held.isEmpty else {
                Foundation.kill(victim.process.processIdentifier, SIGCONT)
                return false
            }
            await victim.kill()
            victimDead.withLock { $0 = true }
            return true
        }
        let answers = await crowd.value
        try #require(killed, "the victim never held a running job")
        #expect(!held.isEmpty, "the victim died holding no job")

        let placed = answers.filter { $0.status == 201 }
        let fromVictim = placed.filter { $0.node == 0 }
        #expect(!fromVictim.isEmpty)
        #expect(
            answers.allSatisfy { $0.status == 201 || $0.node == 0 && [0, -1].contains($0.status) },
            "\(Dictionary(grouping: answers, by: \.status).mapValues(\.count))")
        #expect(answers.filter { $0.node != 0 }.allSatisfy { $0.status == 201 })

        // Every answered order is there, the victim's included.
        let survivor = clients[2]
        for order in placed.compactMap(\.id) {
            #expect(
                try await survivor.call(.GET, "/v1/orders/\(order)", headers: CrestClient.admin).status == 200, "order \(order) is lost")
        }

        // The survivors rescue the victim's jobs after their leases end and run them; every order
        // expires once and every unit comes back.
        var counters: [String: Int] = [:]
        let settled = try await eventually(timeout: .seconds(60), every: .milliseconds(200)) {
            counters = try await survivor.stock(sale: sale)
            return counters["reserved"] == 0
        }
        #expect(settled, "\(counters)")
        #expect(counters == ["total": stock, "available": stock, "reserved": 0, "sold": 0])
        for id in held {
            let job = try await cluster.psql(url, "SELECT state, attempt, leased_by IS NULL FROM jobs WHERE id = \(id)")
            #expect(job.first == ["completed", "2", "t"], "job \(id) left by the victim: \(job)")
        }
        let orders = try await cluster.psql(
            url, "SELECT status, count(*) FROM orders WHERE sale_id = '\(sale)' GROUP BY status")
        #expect(orders.count == 1 && orders.first?.first == "expired", "\(orders)")
        #expect(Int(orders.first?.last ?? "") ?? 0 >= placed.count)
        let doubled = try await cluster.psql(
            url,
            """
            SELECT order_id FROM order_events GROUP BY order_id
            HAVING count(*) <> 2 OR count(*) FILTER (WHERE type = 'order.expired') <> 1
            """)
        #expect(doubled.isEmpty, "orders without exactly one expiry: \(doubled.prefix(5))")
        for node in nodes.dropFirst() { await node.expectGracefulStop() }
    }

    @Test(
        "a risk rule made on one node refuses on the others within seconds and after a restart; rate limits count per node"
    )
    func admissionAcrossNodes() async throws {
        guard let cluster = try await PostgresCluster.shared() else { return }
        let url = try await cluster.createDatabase()
        let directories = Array(Self.dataDirectories().prefix(2))
        defer { for directory in directories { try? FileManager.default.removeItem(at: directory) } }
        let arguments = ["--database-url", url, "--buyer-rate", "1", "--buyer-burst", "2"]
        var nodes = try await Self.start(on: directories, arguments)
        var clients = nodes.map { CrestClient(http: .crest, port: $0.port) }
        let sale = try await clients[0].createSale(stock: 50, adminToken: CrestProcess.adminToken)

        // Per node: the buyer's burst is spent on node 0, and whole on node 1.
        var spent = false
        for attempt in 0..<10 where !spent {
            spent = try await clients[0].order(sale: sale, key: "rita-\(attempt)", buyer: "rita").status == 429
        }
        #expect(spent, "node 0 refuses past the buyer's burst")
        #expect(try await clients[1].order(sale: sale, key: "rita-on-1", buyer: "rita").status != 429)

        let rule = try await clients[0].call(
            .POST, "/v1/risk-rules", headers: CrestClient.admin, json: #"{"type":"deny-buyer","buyer":"mallory"}"#)
        #expect(rule.status == 201)
        #expect(try await clients[0].order(sale: sale, key: "m0", buyer: "mallory").problemType == "urn:crest:problem:risk-refused")
        // Node 1 read the (empty) rules at rita's attempt: it follows within its refresh.
        let deadline = ContinuousClock.now + .seconds(15)
        var refusedOnOther = false
        var attempt = 0
        while !refusedOnOther, ContinuousClock.now < deadline {
            attempt += 1
            let answer = try await clients[1].order(sale: sale, key: "m1-\(attempt)", buyer: "mallory")
            refusedOnOther = answer.problemType == "urn:crest:problem:risk-refused"
            #expect(answer.status != 201 || attempt == 1, "mallory placed an order on node 1 after the rule")
            if !refusedOnOther { try await Task.sleep(for: .milliseconds(300)) }
        }
        #expect(refusedOnOther, "the rule applies on node 1 too")

        // The rule is in the store: a restarted node refuses from its first attempt.
        await nodes[1].expectGracefulStop()
        nodes[1] = try await CrestProcess(dataDirectory: directories[1], extraArguments: arguments)
        clients[1] = CrestClient(http: .crest, port: nodes[1].port)
        #expect(try await clients[1].order(sale: sale, key: "m2", buyer: "mallory").problemType == "urn:crest:problem:risk-refused")
        for node in nodes { await node.expectGracefulStop() }
    }

    /// Three data directories of their own (the nodes keep nothing there but their admin token).
    static func dataDirectories() -> [URL] {
        (0..<3).map { _ in FileManager.default.temporaryDirectory.appending(path: "crest-node-\(UUID().uuidString)") }
    }

    /// One `crest serve` per directory, each with `arguments`.
    static func start(on directories: [URL], _ arguments: [String]) async throws -> [CrestProcess] {
        var nodes: [CrestProcess] = []
        for directory in directories {
            nodes.append(try await CrestProcess(dataDirectory: directory, extraArguments: arguments))
        }
        return nodes
    }
}
