import AsyncHTTPClient
import CrestTestSupport
import Foundation
import NIOHTTP1
import Testing

@Suite("Reads waiting for a payment, in crest serve")
struct OrderWaitProcessTests {
    @Test("a stopping Crest answers the reads that wait for a payment at once, and stops")
    func waitingReadsEndAtStop() async throws {
        // A stop's answer after the read's own 10 s proves nothing either way: on a loaded machine
        // (the whole suite starting its processes on two cores) the stop itself has taken 8.7 and
        // 12.2 s to answer. Such a round is played again, up to three times; without the stop's
        // answer every round ends after the 10 s.
        var rounds: [Duration] = []
        for _ in 1...3 {
            let waited = try await Self.readWaitingAtStop()
            rounds.append(waited)
            if waited < .seconds(10) { break }
        }
        #expect(rounds.last! < .seconds(10), "the stop waited for the read's 10 s in every round: \(rounds)")
    }

    /// One Crest, one order that never gets a payment, a read waiting 10 s for it and a stop 1 s
    /// later; how long after its start the read was answered.
    static func readWaitingAtStop() async throws -> Duration {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-wait-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let crest = try await CrestProcess(dataDirectory: directory)
        let client = CrestClient(http: .crest, port: crest.port)
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
        // The read registered after `started`, so its own 10 s end later than this.
        return answeredAt - started
    }
}
