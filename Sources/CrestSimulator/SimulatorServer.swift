import CrestCore
import CrestPayments
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The simulator's HTTP API: what a payment provider offers a merchant (intents, refunds,
/// statements), a checkout page that plays the buyer, and fault control.
///
/// ```swift
/// let router = SimulatorServer.router(simulator: simulator)
/// let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 8090)))
/// ```
package enum SimulatorServer {
    package static func router(simulator: PaymentSimulator) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: ProviderFaults(simulator: simulator))
        router.get("healthz") { _, _ in "ok" }
        router.post("v1/payment_intents") { request, context -> Response in
            let key = try idempotencyKey(request)
            let body = try await request.decode(as: ProviderAPI.CreateIntent.self, context: context)
            return try json(try simulator.create(body, key: key), status: .created)
        }
        router.get("v1/payment_intents") { request, _ -> Response in
            guard let reference = request.uri.queryParameters["reference"], !reference.isEmpty else {
                throw HTTPError(.badRequest, message: "reference is required")
            }
            return try json(ProviderAPI.IntentList(data: simulator.intents(reference: String(reference))))
        }
        router.get("v1/payment_intents/{id}") { _, context -> Response in
            try json(try simulator.intent(context.parameters.require("id")))
        }
        router.post("v1/payment_intents/{id}/refund") { request, context -> Response in
            try json(try simulator.refund(context.parameters.require("id"), key: try idempotencyKey(request)))
        }
        router.post("v1/payment_intents/{id}/simulate") { request, context -> Response in
            let body = try await request.decode(as: ProviderAPI.Simulate.self, context: context)
            return try json(try simulator.simulate(context.parameters.require("id"), outcome: body.outcome))
        }
        router.get("v1/statements") { request, _ -> Response in
            let query = request.uri.queryParameters
            guard let from = query["from"].flatMap({ Int64($0) }), let to = query["to"].flatMap({ Int64($0) }), from <= to
            else { throw HTTPError(.badRequest, message: "from and to must be unix seconds, from <= to") }
            guard query["format"] == "json" else {
                let lines = simulator.statement(from: from, to: to)
                let csv = ([ProviderAPI.statementHeader] + lines.map(\.csv)).joined(separator: "\n") + "\n"
                return Response(
                    status: .ok, headers: [.contentType: "text/csv; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: csv)))
            }
            guard let limit = Int(query["limit"].map(String.init) ?? "1000"), (1...10_000).contains(limit) else {
                throw HTTPError(.badRequest, message: "limit must be 1…10,000")
            }
            let page = simulator.statementPage(from: from, to: to, after: query["after"].map(String.init) ?? "", limit: limit)
            return try json(ProviderAPI.StatementPage(lines: page.lines, next: page.next))
        }
        router.get("v1/truth") { _, _ -> Response in try json(simulator.injected) }
        router.get("v1/faults") { _, _ -> Response in try json(simulator.faults) }
        router.put("v1/faults") { request, context -> Response in
            let faults = try await request.decode(as: SimulatorFaults.self, context: context)
            if let problem = faults.problem { throw HTTPError(.badRequest, message: problem) }
            simulator.faults = faults
            return try json(faults)
        }
        router.get("pay/{id}") { _, context -> Response in
            let intent = try simulator.intent(try context.parameters.require("id"))
            return html(checkout(intent))
        }
        router.post("pay/{id}") { request, context -> Response in
            let outcome = request.uri.queryParameters["outcome"].flatMap { PaymentStatus(rawValue: String($0)) }
            let intent = try simulator.simulate(try context.parameters.require("id"), outcome: outcome ?? .succeeded)
            return html(checkout(intent))
        }
        return router
    }

    private static func idempotencyKey(_ request: Request) throws -> String {
        guard let key = request.headers[HTTPField.Name("Idempotency-Key")!], !key.isEmpty, key.count <= 255 else {
            throw HTTPError(.badRequest, message: "Idempotency-Key header is required (1 to 255 characters)")
        }
        return key
    }

    private static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(value))))
    }

    private static func html(_ text: String) -> Response {
        Response(
            status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    private static func checkout(_ intent: ProviderAPI.Intent) -> String {
        let amount = String(format: "%.2f", Double(intent.amount) / 100)
        let actions =
            intent.status == .created || intent.status == .failed
            ? """
            <form method="post" action="/pay/\(intent.id)?outcome=succeeded"><button>Pay</button></form>
            <form method="post" action="/pay/\(intent.id)?outcome=failed"><button>Fail the payment</button></form>
            """ : ""
        return """
            <!doctype html><title>Crest payment simulator</title>
            <h1>\(amount) \(intent.currency)</h1><p>Payment \(intent.id) for order \(intent.reference): \(intent.status.rawValue)</p>
            \(actions)
            """
    }
}

extension PaymentSimulator.Failure: HTTPResponseError {
    package var status: HTTPResponse.Status {
        switch self {
        case .notFound: .notFound
        case .conflict, .keyReused: .conflict
        case .invalid: .badRequest
        }
    }

    package func response(from request: Request, context: some RequestContext) throws -> Response {
        let message =
            switch self {
            case .notFound: "no such payment intent"
            case .conflict(let detail): detail
            case .keyReused: "the idempotency key was used with a different request"
            case .invalid(let detail): detail
            }
        let body = #"{"error":{"message":\#(String(reflecting: message))}}"#
        return Response(
            status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}

/// Injects the configured API faults (latency, errors, timeouts) into the calls a merchant makes;
/// the buyer's checkout and fault control stay clean.
struct ProviderFaults: RouterMiddleware {
    typealias Context = BasicRequestContext
    let simulator: PaymentSimulator

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let path = request.uri.path
        guard path.hasPrefix("/v1/payment_intents") || path.hasPrefix("/v1/statements"), !path.hasSuffix("/simulate")
        else { return try await next(request, context) }
        let faults = simulator.faults
        let random = simulator.random
        // An error fails the call before it does anything.
        if random.chance(faults.errorRate) { throw HTTPError(.internalServerError, message: "simulated error") }
        let timesOut = random.chance(faults.timeoutRate)
        let latency = faults.latencyMs + random.upTo(faults.latencyJitterMs)
        let response = try await next(request, context)
        // Latency and timeouts strike after the call took effect, as on a real network: the caller
        // waits (or gives up) not knowing that the payment already exists.
        if latency > 0 { try await Task.sleep(for: .milliseconds(latency)) }
        if timesOut {
            try await Task.sleep(for: .milliseconds(faults.timeoutMs))
            throw HTTPError(.gatewayTimeout, message: "simulated timeout")
        }
        return response
    }
}
