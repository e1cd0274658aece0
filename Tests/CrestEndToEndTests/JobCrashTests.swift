import AsyncHTTPClient
import CrestCore
import CrestStore
import CrestTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import Testing

@Suite("Jobs survive crashes")
struct JobCrashTests {
    @Test("kill -9 while expiry jobs run: after restart each runs again once its lease is over, and stock is released once")
    func expiryJobsSurviveKill9() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-e2e-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let http = HTTPClient(
            eventLoopGroupProvider: .singleton,
            configuration: .init(
                connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 16)))
        let lease = ["--job-lease-seconds", "2"]
        let admin = [("Authorization", "Bearer \(CrestProcess.adminToken)")]
        let stock = 10_000

        // Orders with a short window, placed while Crest runs; it stops before most of them expire,
        // so that the next start finds a backlog of due expiry jobs and is busy running them.
        let window = 3
        let placing = try await CrestProcess(dataDirectory: directory, extraArguments: lease)
        let client = CrestClient(http: http, port: placing.port)
        let sale = try await client.createSale(
            stock: stock, adminToken: CrestProcess.adminToken, paymentWindowSeconds: window)
        let placed: [Result<CrestClient.Answer, any Error>] = await concurrently(2_000, width: 16) { index in
            // A crowded CI machine may refuse an attempt for the moment (503); a buyer resends it.
            do {
                return .success(try await client.orderResending(sale: sale, key: "key-\(index)", buyer: "buyer-\(index)"))
            } catch {
                return .failure(error)
            }
        }
        #expect(await placing.stop() == 0, "graceful stop failed:\n\(placing.log)")
        let orders = placed.compactMap { try? $0.get() }.filter { $0.status == 201 }.compactMap(\.id)
        let unplaced = placed.compactMap { answer -> String? in
            switch answer {
            case .success(let answer): answer.status == 201 ? nil : "\(answer.status) \(answer.problemType ?? "")"
            case .failure(let error): "\(error)"
            }
        }
        #expect(orders.count == placed.count, "not placed: \(Set(unplaced))")
        // No wait for the orders to fall due: the next start finds them due, or sees them fall due
        // while it watches for a running expiry job.

        // The next start works through the backlog — with two workers, so that it takes seconds
        // rather than the instant a full runner needs — and dies while expiry jobs are running.
        // A job seen running may finish in the moment before the kill lands; then the crash left
        // nothing interrupted, and the next start (the backlog is still there) tries again.
        var interrupted: [Job] = []
        for _ in 0..<3 where interrupted.isEmpty {
            let first = try await CrestProcess(dataDirectory: directory, extraArguments: lease + ["--job-workers", "2"])
            let busy = CrestClient(http: http, port: first.port)
            let caught = try await eventually(timeout: .seconds(20), every: .milliseconds(1)) {
                let running = try await busy.call(.GET, "/v1/jobs?state=running&kind=order.expire-batch", headers: admin)
                guard (running.json["jobs"] as? [Any])?.isEmpty == false else { return false }
                await first.kill()
                return true
            }
            guard caught else {
                _ = await first.stop()
                Issue.record("no expiry job was seen running")
                break
            }

            // What the crash left: jobs still marked running, with a lease that nobody will extend.
            let crashed = try SQLiteStore(directory: directory)
            interrupted = try await crashed.jobs(matching: JobFilter(state: .running), after: nil, limit: 1_000)
            try await crashed.close()
        }
        #expect(!interrupted.isEmpty, "no job was running when the process was killed")

        let second = try await CrestProcess(dataDirectory: directory, extraArguments: lease)
        let restarted = CrestClient(http: http, port: second.port)
        for job in interrupted {
            var after: [String: Any] = [:]
            let done = try await eventually(timeout: .seconds(20)) {
                after = try await restarted.call(.GET, "/v1/jobs/\(job.id)", headers: admin).json
                return after["state"] as? String == "completed"
            }
            #expect(done, "job \(job.id) did not run again: \(after)")
            #expect(after["attempt"] as? Int == job.attempt + 1, "job \(job.id) ran \(after["attempt"] ?? "?") times")
            let leaseEnd = try #require(job.leaseUntil)
            let reran = try #require((after["attemptedAt"] as? String).flatMap { try? Date($0, strategy: .iso8601) })
            #expect(reran >= leaseEnd.addingTimeInterval(-0.001), "ran again at \(reran), before its lease ended at \(leaseEnd)")
            // Its effect happened once: each of its orders (some perhaps expired before the kill,
            // the rest by the run again) expired with one event.
            for orderID in try OrderJobs.expireBatch.parameters(of: job).orderIds {
                let events =
                    try await restarted.call(.GET, "/v1/orders/\(orderID)/events", headers: CrestClient.admin).json["events"]
                    as? [[String: Any]]
                #expect(events?.map { $0["type"] as? String } == ["order.created", "order.expired"])
            }
        }
        // Every order expires, and every unit is back exactly once.
        var counters: [String: Int] = [:]
        let allBack = try await eventually(timeout: .seconds(30)) {
            counters = try await restarted.stock(sale: sale)
            return counters["reserved"] == 0
        }
        #expect(allBack, "stock still reserved: \(counters)")
        #expect(counters == ["total": stock, "available": stock, "reserved": 0, "sold": 0])
        for id in orders.prefix(100) {
            let events =
                try await restarted.call(.GET, "/v1/orders/\(id)/events", headers: CrestClient.admin).json["events"] as? [[String: Any]]
            #expect(events?.map { $0["type"] as? String } == ["order.created", "order.expired"])
        }
        #expect(await second.stop() == 0, "graceful stop failed:\n\(second.log)")
        try await http.shutdown()
    }
}
