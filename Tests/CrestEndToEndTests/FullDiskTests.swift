import AsyncHTTPClient
import CrestTestSupport
import Foundation
import NIOHTTP1
import Testing

/// The embedded store on a full disk: a small tmpfs holds `crest serve`'s data directory, and a
/// file fills what is left of it. Orders then get 503 with Retry-After (never a 201 that is not
/// kept, never a crash); once the file is gone the same attempts succeed without a restart, and
/// after it every order answered 201 is there and `crest audit` passes.
@Suite("The embedded store on a full disk", .serialized)
struct FullDiskTests {
    /// Mounting needs root (CI runs as root); elsewhere without it the test skips.
    static var available: Bool { geteuid() == 0 || ProcessInfo.processInfo.environment["CI"] != nil }

    @Test(
        "orders get 503 while the disk is full, succeed again once space returns; nothing answered is lost",
        .enabled(if: available, "mounting a small tmpfs needs root"))
    func fullDisk() async throws {
        let mountPoint = FileManager.default.temporaryDirectory.appending(path: "crest-full-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: mountPoint, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: mountPoint) }
        try await Self.command("/bin/mount", ["-t", "tmpfs", "-o", "size=16m", "tmpfs", mountPoint.path])
        do {
            try await exercise(mountPoint)
        } catch {
            try? await Self.command("/bin/umount", ["-l", mountPoint.path])
            throw error
        }
        try await Self.command("/bin/umount", ["-l", mountPoint.path])
    }

    private func exercise(_ mountPoint: URL) async throws {
        let data = mountPoint.appending(path: "data")
        let crest = try await CrestProcess(dataDirectory: data, extraArguments: ["--buyer-rate", "0"])
        let client = CrestClient(http: .crest, port: crest.port)
        let sale = try await client.createSale(stock: 10_000, adminToken: CrestProcess.adminToken)
        var answered: [String: String] = [:]  // key → order id
        for n in 0..<20 {
            let answer = try await client.order(sale: sale, key: "before-\(n)", buyer: "b-before-\(n)")
            #expect(answer.status == 201)
            answered["before-\(n)"] = answer.id
        }

        // Fill the file system to its last byte.
        let filler = mountPoint.appending(path: "filler")
        #expect(FileManager.default.createFile(atPath: filler.path, contents: nil))
        let handle = try FileHandle(forWritingTo: filler)
        let chunk = Data(repeating: 0x5A, count: 64 * 1024)
        var small = Data(repeating: 0x5A, count: 4096)
        while (try? handle.write(contentsOf: chunk)) != nil {}
        while (try? handle.write(contentsOf: small)) != nil {}
        small = Data([0x5A])
        while (try? handle.write(contentsOf: small)) != nil {}
        try? handle.close()

        // Now attempts are refused with 503 and Retry-After; an attempt that still fits is kept.
        var refused: [String] = []
        for n in 0..<40 {
            let key = "full-\(n)"
            let answer = try await client.order(sale: sale, key: key, buyer: "b-\(key)")
            #expect(answer.status == 201 || answer.status == 503, "\(answer.status) \(answer.problemType ?? "")")
            if answer.status == 201 { answered[key] = answer.id }
            if answer.status == 503 {
                #expect(answer.headers.first(name: "Retry-After") != nil)
                #expect(answer.problemType == "urn:crest:problem:unavailable")
                refused.append(key)
            }
        }
        #expect(refused.count >= 30, "a full disk must refuse: \(refused.count) of 40 refused")
        #expect(try await client.call(.GET, "/healthz").status == 200, "the process lives on")

        // Space returns: the same attempts succeed, without a restart.
        try FileManager.default.removeItem(at: filler)
        for key in refused {
            var answer = try await client.order(sale: sale, key: key, buyer: "b-\(key)")
            let deadline = ContinuousClock.now + .seconds(20)
            while answer.status == 503, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(200))
                answer = try await client.order(sale: sale, key: key, buyer: "b-\(key)")
            }
            #expect(answer.status == 201, "\(key): \(answer.status) \(answer.problemType ?? "")")
            answered[key] = answer.id
        }

        // Stopped and started again: every answered order is there, and the audit passes.
        await crest.expectGracefulStop()
        let again = try await CrestProcess(dataDirectory: data)
        let reread = CrestClient(http: .crest, port: again.port)
        for (key, id) in answered {
            let order = try await reread.call(.GET, "/v1/orders/\(id)", headers: CrestClient.admin)
            #expect(order.status == 200 && order.json["buyer"] as? String == "b-\(key)", "\(key)")
        }
        let stock = try await reread.stock(sale: sale)
        #expect(stock["reserved"] == answered.count && stock["available"] == 10_000 - answered.count, "\(stock)")
        _ = await again.stop()
        let audit = try await CrestCommand.run(["audit", "--data-dir", data.path], timeout: .seconds(60))
        #expect(audit.status == 0 && audit.output.contains("audit: passed"), "\(audit.output)")
    }

    private static func command(_ executable: String, _ arguments: [String]) async throws {
        let process = ChildProcess(executable: executable, arguments: arguments)
        try process.run()
        await offPool { process.waitUntilExit() }
        guard process.terminationStatus == 0 else {
            throw CrestClientError(message: "\(executable) \(arguments.joined(separator: " ")): \(process.terminationStatus)")
        }
    }
}
