import AsyncHTTPClient
import CrestTestSupport
import Foundation
import NIOHTTP1
import Testing

@Suite("PostgreSQL restarted mid-load")
struct DatabaseRestartTests {
    /// One order attempt of the load: when it was sent (0 before the restart, 1 while the
    /// database is down or restarting, 2 after it is back) and what it got.
    struct Attempt: Sendable {
        var sentIn: Int
        var key: String
        var status: Int
        var id: String?
        var problemType: String?
        /// Why there was no answer (status 0), and after how long.
        var failure: String?
    }

    /// How PostgreSQL goes away.
    enum Fault: String, CaseIterable, Sendable, CustomTestStringConvertible {
        /// `pg_ctl stop -m fast`: sessions are cut, the server shuts down cleanly.
        case stopped
        /// `kill -9` of the postmaster: no shutdown; the server recovers from its WAL at start.
        case postmasterKilled
        /// `SIGSTOP` of every PostgreSQL process: connections stay open and nothing answers (a
        /// stalled machine or disk); the node's own deadlines (`--database-timeout-ms`) answer.
        case frozen

        var testDescription: String { rawValue }
    }

    @Test(
        "while PostgreSQL is down orders get 503, nothing answered 201 is lost, and Crest resumes by itself",
        arguments: Fault.allCases)
    func restartMidLoad(fault: Fault) async throws {
        // A cluster of its own: restarting the shared one would disturb every other test. Its
        // commits wait for their WAL (a killed server must not lose what it acknowledged).
        guard let cluster = try await PostgresCluster.dedicated(durable: true) else { return }
        do {
            try await restartMidLoad(on: cluster, fault: fault)
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    private func restartMidLoad(on cluster: PostgresCluster, fault: Fault) async throws {
        let url = try await cluster.createDatabase()
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-node-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let node = try await CrestProcess(
            dataDirectory: directory,
            extraArguments: [
                "--database-url", url, "--database-connections", "10", "--database-wait-ms", "1500",
                "--database-timeout-ms", "2000",
            ])
        #expect(node.log.contains("10 connections, 1500 ms wait, 2000 ms timeout"), "\(node.log)")
        let client = CrestClient(http: .crest, port: node.port)
        let stock = 100_000
        let sale = try await client.createSale(stock: stock, adminToken: CrestProcess.adminToken)

        // Eight buyers' loops, each attempt with a key of its own, until told to stop.
        let phase = Locked(0)
        let stopping = Locked(false)
        let attempts = Locked<[Attempt]>([])
        let load = Task {
            await concurrently(8, width: 8) { worker in
                var next = 0
                while !stopping.value {
                    let key = "w\(worker)-\(next)"
                    next += 1
                    let sentIn = phase.value
                    let sentAt = ContinuousClock.now
                    var answer: CrestClient.Answer?
                    var failure: String?
                    do {
                        answer = try await client.order(sale: sale, key: key, buyer: key)
                    } catch {
                        failure = "\(String(reflecting: error)) after \(ContinuousClock.now - sentAt)"
                    }
                    attempts.withLock {
                        $0.append(
                            Attempt(
                                sentIn: sentIn, key: key, status: answer?.status ?? 0, id: answer?.id,
                                problemType: answer?.problemType, failure: failure))
                    }
                    if answer?.status != 201 { try? await Task.sleep(for: .milliseconds(50)) }
                }
            }
        }
        let placedBefore = try await eventually(timeout: .seconds(60)) { attempts.value.count(where: { $0.status == 201 }) >= 200 }
        #expect(placedBefore)

        // PostgreSQL goes away (sessions are cut, or nothing answers) and comes back 5 s later on
        // the same port.
        phase.withLock { $0 = 1 }
        let restarting = Task {
            switch fault {
            case .stopped: try await cluster.restart(downFor: .seconds(5))
            case .postmasterKilled: try await cluster.crash(downFor: .seconds(5))
            case .frozen: try await cluster.freeze(for: .seconds(5))
            }
        }
        let notReady = try await eventually(timeout: .seconds(10)) {
            try await client.call(.GET, "/readyz").status == 503
        }
        #expect(notReady, "/readyz never said the store was unreachable")
        try await restarting.value
        phase.withLock { $0 = 2 }

        // Nobody restarts Crest: it reconnects and takes orders again.
        let resumed = try await eventually(timeout: .seconds(45)) {
            attempts.value.count(where: { $0.sentIn == 2 && $0.status == 201 }) >= 50
        }
        stopping.withLock { $0 = true }
        _ = await load.value
        let all = attempts.value
        #expect(resumed, "\(Dictionary(grouping: all.filter { $0.sentIn == 2 }, by: \.status).mapValues(\.count))")
        #expect(try await client.call(.GET, "/readyz").status == 200)
        if fault == .frozen {
            // The calls that held a connection to the frozen server were answered by their deadline.
            let metrics = String(decoding: try await client.call(.GET, "/metrics").body, as: UTF8.self)
            let answered = metrics.split(separator: "\n").first { $0.hasPrefix(#"crest_database_timeouts_total{kind="answer"}"#) }
            #expect(answered.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0 >= 1, "\(answered ?? "none")")
        }

        // While it was down: 503 with the "unavailable" problem, never a 5xx of another kind, never
        // a dropped connection.
        let byStatus = Dictionary(grouping: all, by: \.status).mapValues(\.count)
        #expect(
            Set(byStatus.keys).isSubset(of: [201, 503]),
            "\(byStatus); no answer: \(all.filter { $0.status == 0 }.map { "phase \($0.sentIn): \($0.failure ?? "")" })")
        let refused = all.filter { $0.status == 503 }
        #expect(refused.contains { $0.sentIn == 1 }, "no attempt was answered 503 while PostgreSQL was down: \(byStatus)")
        #expect(refused.allSatisfy { $0.problemType == "urn:crest:problem:unavailable" }, "\(refused.prefix(3).map(\.problemType))")

        // Nothing answered 201 is lost.
        for attempt in all where attempt.status == 201 {
            let order = try await client.call(.GET, "/v1/orders/\(try #require(attempt.id))", headers: CrestClient.admin)
            #expect(order.status == 200, "order \(attempt.id ?? "") answered 201 is lost")
        }
        // A refused attempt sent again with its key either finds the order its first try placed
        // (its fate was unknown when the connection died) or places it now — once.
        for attempt in refused {
            let again = try await client.order(sale: sale, key: attempt.key, buyer: attempt.key)
            #expect(again.status == 201, "\(attempt.key): \(again.status) \(again.problemType ?? "")")
        }
        let keys = Set(all.map(\.key))
        let orders = try await cluster.psql(url, "SELECT count(*), count(DISTINCT idempotency_key) FROM orders WHERE sale_id = '\(sale)'")
        #expect(orders.first == ["\(keys.count)", "\(keys.count)"], "\(orders) orders for \(keys.count) keys")
        let counters = try await client.stock(sale: sale)
        #expect(counters == ["total": stock, "available": stock - keys.count, "reserved": keys.count, "sold": 0])
        await node.expectGracefulStop()
    }
}
