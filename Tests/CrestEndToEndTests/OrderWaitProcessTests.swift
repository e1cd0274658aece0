import AsyncHTTPClient
import CrestTestSupport
import Foundation
import NIOHTTP1
import Testing

@Suite("Reads waiting for a payment, in crest serve")
struct OrderWaitProcessTests {
    @Test("a stopping Crest answers the reads that wait for a payment at once, and stops")
    func waitingReadsEndAtStop() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-wait-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let crest = try await CrestProcess(dataDirectory: directory)
        let client = CrestClient(http: .shared, port: crest.port)
        let sale = try await client.createSale(stock: 5, adminToken: CrestProcess.adminToken)
        // No provider: the order never gets a payment, and the read would wait all its 10 s.
        let id = try #require(try await client.order(sale: sale, key: "k1", buyer: "ana").id)
        let started = ContinuousClock.now
        let read = Task {
            let answer = try await client.call(.GET, "/v1/orders/\(id)?wait=10", headers: CrestClient.admin)
            return (answer, ContinuousClock.now)
        }
        try await Task.sleep(for: .seconds(1))
        await crest.expectGracefulStop()
        let (answer, answeredAt) = try await read.value
        #expect(answer.status == 200, "\(String(decoding: answer.body, as: UTF8.self))")
        #expect(answer.json["status"] as? String == "pending_payment")
        // The read registered after `started`, so its own 10 s end later than this: an answer before
        // came from the stop (a loaded full suite took 8.7 s to stop and answer).
        #expect(answeredAt - started < .seconds(10), "the stop waited for the read's 10 s")
    }
}
