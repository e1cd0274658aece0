import AsyncHTTPClient
import CrestCore
import CrestStore
import CrestTestSupport
import Foundation
import NIOHTTP1
import Testing

@Suite("crest audit and GET /v1/audit")
struct AuditProcessTests {
    @Test("a running Crest's audit passes over HTTP; stopped, `crest audit` passes (exit 0), then finds a planted violation (exit 1, JSON)")
    func auditCommand() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "crest-audit-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let crest = try await CrestProcess(dataDirectory: directory)
        let client = CrestClient(http: .crest, port: crest.port)
        let sale = try await client.createSale(stock: 5, adminToken: CrestProcess.adminToken)
        let placed = try await client.order(sale: sale, key: "k1", buyer: "ana")
        let orderID = try #require(placed.id.flatMap(OrderID.init))
        #expect(try await client.call(.GET, "/v1/audit").status == 401)
        let live = try await client.call(.GET, "/v1/audit", headers: CrestClient.admin)
        #expect(live.status == 200)
        #expect(live.json["passed"] as? Bool == true, "\(String(decoding: live.body, as: UTF8.self))")
        #expect((live.json["checks"] as? [[String: Any]])?.count == AuditCheck.allCases.count)
        await crest.expectGracefulStop()

        let clean = try await CrestCommand.run(["audit", "--data-dir", directory.path], timeout: .seconds(60))
        #expect(clean.status == 0, "\(clean.output)")
        #expect(clean.output.contains("audit: passed"), "\(clean.output)")

        // Paid behind the payment flow's back: a paid order with no succeeded payment.
        let store = try SQLiteStore(directory: directory)
        _ = try await store.transition(orderID, by: .pay, at: Date())
        try await store.close()
        let broken = try await CrestCommand.run(["audit", "--data-dir", directory.path, "--json"], timeout: .seconds(60))
        #expect(broken.status == 1, "\(broken.output)")
        let report = try JSONSerialization.jsonObject(with: Data(broken.output.utf8)) as? [String: Any]
        #expect(report?["passed"] as? Bool == false)
        let findings = report?["findings"] as? [[String: Any]] ?? []
        #expect(findings.map { $0["check"] as? String } == ["paid-order-has-payment"], "\(findings)")
        #expect(findings.first?["subject"] as? String == "order \(orderID)")
        let table = try await CrestCommand.run(["audit", "--data-dir", directory.path], timeout: .seconds(60))
        #expect(table.status == 1 && table.output.contains("FAIL paid-order-has-payment"), "\(table.output)")

        let missing = try await CrestCommand.run(["audit", "--data-dir", directory.appending(path: "nothing").path], timeout: .seconds(60))
        #expect(missing.status != 0 && missing.output.contains("no data directory at"), "\(missing.output)")
    }
}
