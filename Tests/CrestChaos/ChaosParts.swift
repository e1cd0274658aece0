import AsyncHTTPClient
import CrestTestSupport
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle

/// Crest over HTTP for the chaos run: every call is made again while the server is down.
struct Crest: Sendable {
    static let admin = "chaos-admin-token"

    let port: Int
    let simulatorPort: Int

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// One call; `nil` when no answer came (a dead or restarting server).
    func send(_ method: HTTPMethod, _ url: String, _ body: [String: Any]? = nil, headers: [(String, String)] = [])
        async -> (status: Int, json: [String: Any])?
    {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(Self.admin)")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body, let data = try? JSONSerialization.data(withJSONObject: body) {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: data))
        }
        guard let response = try? await HTTPClient.crest.execute(request, timeout: .seconds(10)),
            let bytes = try? await response.body.collect(upTo: 8 << 20)
        else { return nil }
        let json = (try? JSONSerialization.jsonObject(with: Data(bytes.readableBytesView))) as? [String: Any] ?? [:]
        return (Int(response.status.code), json)
    }

    /// An operator's call to Crest, made again until Crest answers it (2xx) — at most a minute.
    @discardableResult
    func admin(_ method: HTTPMethod, _ path: String, _ body: [String: Any]? = nil) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + .seconds(60)
        var last = "no answer"
        while ContinuousClock.now < deadline {
            if let answer = await send(method, "http://127.0.0.1:\(port)\(path)", body) {
                if (200..<300).contains(answer.status) { return answer.json }
                last = "\(answer.status) \(answer.json)"
                if answer.status < 500 { break }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw Failure(description: "\(method) \(path): \(last)")
    }

    /// An order attempt, sent again with its key until it gets an answer other than 503.
    func placeUntilAnswered(sale: String, key: String, buyer: String) async -> (status: Int, id: String?) {
        while true {
            if let answer = await send(
                .POST, "http://127.0.0.1:\(port)/v1/sales/\(sale)/orders", ["buyer": buyer, "quantity": 1],
                headers: [("Idempotency-Key", key)]), answer.status != 503
            {
                return (answer.status, answer.json["id"] as? String)
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    /// The buyer pays the order at the provider once its payment exists: at once, or (`late`)
    /// a second after its payment window closed. The payment is waited for (a job creates it), or
    /// (`atCheckout`) asked for with the checkout, `POST /v1/orders/{id}/payment`, again while
    /// Crest is down, unavailable (503) or the provider refused (502).
    func pay(order: String, late: Bool, atCheckout: Bool, window: Int, history: History) async {
        let deadline = ContinuousClock.now + .seconds(window + 30)
        let (method, path): (HTTPMethod, String) = atCheckout ? (.POST, "/payment") : (.GET, "")
        var paymentID: String?
        var expiresAt: Date?
        while paymentID == nil, ContinuousClock.now < deadline {
            let answer = await send(method, "http://127.0.0.1:\(port)/v1/orders/\(order)\(path)")
            if let answer, answer.status == 200 {
                paymentID = (answer.json["payment"] as? [String: Any])?["id"] as? String
                expiresAt = (answer.json["expiresAt"] as? String).flatMap { try? Date($0, strategy: .iso8601) }
                if answer.json["status"] as? String != "pending_payment", !late { return }
            } else if answer?.status == 409 {
                return  // the checkout's: the order ended, or its window closed, before it was paid
            }
            if paymentID == nil { try? await Task.sleep(for: .milliseconds(200)) }
        }
        guard let paymentID else { return }
        if late, let expiresAt {
            let wait = expiresAt.timeIntervalSinceNow + 1
            if wait > 0 { try? await Task.sleep(for: .seconds(wait)) }
        }
        let answer = await send(
            .POST, "http://127.0.0.1:\(simulatorPort)/v1/payment_intents/\(paymentID)/simulate", ["outcome": "succeeded"])
        guard answer?.status == 200 else { return }
        history.paid.withLock { _ = $0.insert(order) }
        if late { history.late.withLock { _ = $0.insert(order) } }
    }

    /// The provider's statement since `from`: charges (payment id → order id) and refunded payments.
    func statement(from: Date) async throws -> (charges: [String: String], refunds: Set<String>) {
        var charges: [String: String] = [:]
        var refunds: Set<String> = []
        var after = ""
        let window = "from=\(Int(from.timeIntervalSince1970))&to=\(Int(Date().timeIntervalSince1970) + 60)"
        while true {
            // The simulator's faults hit this read too: asked until it answers.
            var answer: (status: Int, json: [String: Any])?
            for _ in 0..<30 where answer?.status != 200 {
                answer = await send(
                    .GET, "http://127.0.0.1:\(simulatorPort)/v1/statements?\(window)&format=json&limit=10000&after=\(after)")
            }
            guard let page = answer, page.status == 200 else {
                throw Failure(description: "the provider's statement did not come")
            }
            for line in page.json["lines"] as? [[String: Any]] ?? [] {
                guard let payment = line["paymentId"] as? String else { continue }
                if line["kind"] as? String == "refund" {
                    refunds.insert(payment)
                } else {
                    charges[payment] = line["reference"] as? String ?? ""
                }
            }
            guard let next = page.json["next"] as? String else { return (charges, refunds) }
            after = next
        }
    }

    /// Every order of the sale, oldest first.
    func orders(sale: String) async throws -> [[String: Any]] {
        var all: [[String: Any]] = []
        var after: String?
        repeat {
            let page = try await admin(.GET, "/v1/orders?saleId=\(sale)&limit=200" + (after.map { "&after=\($0)" } ?? ""))
            all += page["orders"] as? [[String: Any]] ?? []
            after = page["next"] as? String
        } while after != nil
        return all
    }

    /// Waits until no order awaits payment and no job is due or running (twice in a row).
    func waitUntilSettled(sale: String, history: History) async throws {
        let deadline = ContinuousClock.now + .seconds(600)
        var quietReads = 0
        while quietReads < 2 {
            guard ContinuousClock.now < deadline else { throw Failure(description: "jobs did not drain in 10 minutes") }
            try await Task.sleep(for: .seconds(1))
            let pending = try await admin(.GET, "/v1/orders?saleId=\(sale)&status=pending_payment&limit=1")
            var busy = (pending["orders"] as? [Any])?.isEmpty == false
            for state in ["available", "retryable", "running"] where !busy {
                busy = (try await admin(.GET, "/v1/jobs?state=\(state)&limit=1")["jobs"] as? [Any])?.isEmpty == false
            }
            quietReads = busy ? 0 : quietReads + 1
        }
    }

    /// Reconciliation runs until one heals nothing (each heal's refund job done first); the last
    /// run's differences reported to operators.
    func reconcileUntilQuiet(from: Date) async throws -> (reported: Int, summary: String) {
        var summary: [String] = []
        for _ in 0..<4 {
            let window = ["from": from.formatted(.iso8601), "to": Date().formatted(.iso8601)]
            let created = try await admin(.POST, "/v1/reconciliations", window)
            let id = created["id"] as? String ?? ""
            var run = created
            while run["state"] as? String == "running" {
                try await Task.sleep(for: .milliseconds(200))
                run = try await admin(.GET, "/v1/reconciliations/\(id)")
            }
            let (healed, underWay, reported) = (run["healed"] as? Int ?? 0, run["healUnderWay"] as? Int ?? 0, run["reported"] as? Int ?? 0)
            summary.append(
                "run \(summary.count + 1): \(run["state"] ?? "?") lines=\(run["lines"] ?? 0) matched=\(run["matched"] ?? 0)"
                    + " healed=\(healed) under_way=\(underWay) reported=\(reported)")
            if run["state"] as? String != "finished" { return (max(reported, 1), summary.joined(separator: "; ")) }
            if healed == 0 && underWay == 0 { return (reported, summary.joined(separator: "; ")) }
            try await Task.sleep(for: .seconds(3))  // the heals' jobs run
        }
        return (1, summary.joined(separator: "; ") + "; still healing after 4 runs")
    }
}

/// The merchant's webhook endpoint: records each delivery's order and sequence, in arrival order.
final class MerchantEndpoint: Sendable {
    private let arrivals = Locked<[(order: String, sequence: Int)]>([])
    private let group = Locked<ServiceGroup?>(nil)
    private let running = Locked<Task<Void, any Error>?>(nil)

    func start() async throws -> Int {
        let router = Router()
        router.post("hooks") { request, _ -> Response in
            var request = request
            let data = Data(try await request.collectBody(upTo: 1 << 20).readableBytesView)
            if let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let order = (json["order"] as? [String: Any])?["id"] as? String, let sequence = json["sequence"] as? Int
            {
                self.arrivals.withLock { $0.append((order, sequence)) }
            }
            return Response(status: .ok)
        }
        let port = Locked<Int?>(nil)
        var logger = Logger(label: "chaos.merchant")
        logger.logLevel = .error
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in port.withLock { $0 = channel.localAddress?.port } }, logger: logger)
        let group = ServiceGroup(services: [app], logger: logger)
        self.group.withLock { $0 = group }
        running.withLock { $0 = Task { try await group.run() } }
        for _ in 0..<500 {
            if let port = port.value { return port }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw Crest.Failure(description: "the merchant endpoint did not start")
    }

    /// For each order, its event sequences in the order they first arrived.
    func firstArrivals() -> [String: [Int]] {
        var seen: Set<String> = []
        var first: [String: [Int]] = [:]
        for arrival in arrivals.value where seen.insert("\(arrival.order)/\(arrival.sequence)").inserted {
            first[arrival.order, default: []].append(arrival.sequence)
        }
        return first
    }

    func stop() async throws {
        await group.value?.triggerGracefulShutdown()
        try await running.value?.value
    }
}
