import AsyncHTTPClient
import CrestTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import Testing

@Suite("Crashes lose nothing that was answered")
struct CrashTests {
    @Test(
        "acknowledged orders survive kill -9; unanswered requests resent with their keys are created once",
        arguments: ["sqlite", "postgres"])
    func acknowledgedOrdersSurviveKill9(store kind: String) async throws {
        guard let data = try await CrashTestData.make(kind) else { return }
        defer { data.remove() }
        try await CrashTestData.client(connections: 32).closing { http in

            let requests = 2_000
            let first = try await CrestProcess(dataDirectory: data.directory, extraArguments: data.arguments)
            let client = CrestClient(http: http, port: first.port)
            let sale = try await client.createSale(stock: 10_000, adminToken: CrestProcess.adminToken)

            // Orders in flight from 32 connections; the process is killed once 300 were answered.
            let answered = Locked(0)
            let killed = Locked(false)
            let results: [String?] = await concurrently(requests, width: 32) { index in
                guard !killed.value else { return nil }
                let answer = try? await client.order(sale: sale, key: "key-\(index)", buyer: "buyer-\(index)")
                guard let answer, answer.status == 201 else { return nil }
                let count = answered.withLock { count in
                    count += 1
                    return count
                }
                if count == 300 {
                    killed.withLock { $0 = true }
                    await first.kill()
                }
                return answer.id
            }
            #expect(killed.value, "the process was not killed mid-load")
            let acknowledged = results.enumerated().compactMap { entry in entry.element.map { (entry.offset, $0) } }
            #expect(acknowledged.count >= 300)
            #expect(acknowledged.count < requests, "the kill came after every request was answered")

            let second = try await CrestProcess(dataDirectory: data.directory, extraArguments: data.arguments)
            let restarted = CrestClient(http: http, port: second.port)
            // Every order answered 201 is there.
            for (_, id) in acknowledged {
                let answer = try await restarted.call(.GET, "/v1/orders/\(id)", headers: CrestClient.admin)
                #expect(answer.status == 200, "acknowledged order \(id) was lost")
            }
            let afterRestart = try await restarted.stock(sale: sale)
            #expect(afterRestart["available"]! + afterRestart["reserved"]! + afterRestart["sold"]! == 10_000)
            #expect(afterRestart["reserved"]! >= acknowledged.count)

            // Resending each unanswered request with its key returns its order or creates it, once.
            var ids = Set(acknowledged.map(\.1))
            for (index, result) in results.enumerated() where result == nil {
                let answer = try await restarted.order(sale: sale, key: "key-\(index)", buyer: "buyer-\(index)")
                #expect(answer.status == 201, "resend of key-\(index): \(answer.status) \(answer.problemType ?? "")")
                if let id = answer.id { ids.insert(id) }
            }
            // Replays of the acknowledged ones still return the same order.
            for (index, id) in acknowledged.prefix(50) {
                let answer = try await restarted.order(sale: sale, key: "key-\(index)", buyer: "buyer-\(index)")
                #expect(answer.id == id)
            }
            #expect(ids.count == requests)
            let final = try await restarted.stock(sale: sale)
            #expect(final == ["total": 10_000, "available": 10_000 - requests, "reserved": requests, "sold": 0])
            let audit = try await restarted.audit()
            #expect(audit.passed, "\(audit.report)")
            await second.expectGracefulStop()
        }
    }
}
