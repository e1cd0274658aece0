import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// `crest reconcile`: asks a running Crest to reconcile a window with the provider's statement
/// (`POST /v1/reconciliations`) and prints what it found.
struct ReconcileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reconcile",
        abstract: "Reconcile a window of payments with the provider's statement, through a running Crest.",
        discussion: """
            The running Crest reads the provider's statement for the payments created in --from..<--to, heals \
            the differences that are safe to heal (each with its audit record) and reports the rest. Exit status \
            0 when nothing is left for an operator, 1 when a reported difference is not yet resolved by one \
            (POST /v1/reconciliations/{id}/items/{sequence}/resolution), 2 when the run failed.
            """)

    @Option(help: "Start of the window: an RFC 3339 time, or how long ago (e.g. 24h, 90m)") var from: String
    @Option(help: "End of the window: an RFC 3339 time, or how long ago (default: now)") var to: String?
    @Option(help: LoadTestCommand.url.help) var url: String?
    @Option(help: LoadTestCommand.adminToken.help) var adminToken: String?
    @Flag(help: "Print the run and its items as JSON on standard output") var json = false

    func run() async throws {
        let settings = Settings()
        let base = LoadTestCommand.url.value(url, in: settings)
        guard let token = LoadTestCommand.adminToken.resolve(adminToken, in: settings) else {
            throw ValidationError("--admin-token is required (or CREST_ADMIN_TOKEN)")
        }
        let now = Date()
        // By default up to the next whole second: a payment made this very second is in the window.
        let end = try to.map { try Self.time($0, now: now) } ?? Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.up) + 1)
        let window = ["from": try Self.time(from, now: now), "to": end]
        let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        let body = try JSONSerialization.data(withJSONObject: window.mapValues { $0.formatted(style) })
        let created = try await Self.call(.POST, base + "/v1/reconciliations", token: token, body: body)
        guard created.status == 201, let id = created.json["id"] as? String else {
            Console.complain("crest reconcile: \(created.status): \(String(decoding: created.data, as: UTF8.self))")
            throw ExitCode(2)
        }
        var run = created.json
        var items: [[String: Any]] = []
        var after: Int?
        repeat {
            let page = try await Self.call(
                .GET, base + "/v1/reconciliations/\(id)?limit=200" + (after.map { "&after=\($0)" } ?? ""), token: token)
            items += page.json["items"] as? [[String: Any]] ?? []
            after = page.json["next"] as? Int
            run = page.json
        } while after != nil
        run["items"] = items
        run["next"] = nil
        if json {
            let data = try JSONSerialization.data(withJSONObject: run, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(Self.table(run, items: items))
        }
        if items.contains(where: Self.isOpen) { throw ExitCode(1) }
    }

    /// A reported difference no operator resolved yet.
    static func isOpen(_ item: [String: Any]) -> Bool {
        item["resolution"] as? String == "reported" && item["operatorResolution"] == nil
    }

    /// An RFC 3339 time, or a duration before `now`.
    static func time(_ text: String, now: Date) throws -> Date {
        if let date = try? Date(text, strategy: .iso8601) { return date }
        guard let ago = try? parseDuration(text) else {
            throw ValidationError("\(text) is neither an RFC 3339 time nor a duration (e.g. 24h)")
        }
        return now.addingTimeInterval(-Double(ago.components.seconds) - Double(ago.components.attoseconds) / 1e18)
    }

    static func table(_ run: [String: Any], items: [[String: Any]]) -> String {
        func count(_ key: String) -> Int { run[key] as? Int ?? 0 }
        var lines = [
            "reconciliation \(run["id"] as? String ?? "") of \(run["from"] as? String ?? "")..<\(run["to"] as? String ?? ""): \(run["state"] as? String ?? "")",
            "  \(count("lines")) statement lines, \(count("matched")) matched; \(count("healed")) healed, \(count("healUnderWay")) heal under way, \(count("reported")) reported",
        ]
        for item in items {
            let order = (item["orderId"] as? String).map { " order \($0)" } ?? ""
            let action = (item["action"] as? String).flatMap { $0.isEmpty ? nil : " — \($0)" } ?? ""
            let resolved = ((item["operatorResolution"] as? [String: Any])?["note"] as? String).map { " — resolved: \($0)" } ?? ""
            lines.append(
                "  \(item["resolution"] as? String ?? "")  \(item["kind"] as? String ?? "")  payment \(item["paymentId"] as? String ?? "")\(order)\(action)\(resolved)"
            )
        }
        return lines.joined(separator: "\n")
    }

    static func call(_ method: HTTPMethod, _ url: String, token: String, body: Data? = nil) async throws
        -> (status: Int, json: [String: Any], data: Data)
    {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .seconds(300))
        } catch {
            throw ValidationError("cannot reach Crest at \(url): \(error)")
        }
        let data = Data(try await response.body.collect(upTo: 64 << 20).readableBytesView)
        let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        return (Int(response.status.code), json, data)
    }
}
