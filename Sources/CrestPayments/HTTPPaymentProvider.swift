import AsyncHTTPClient
import CrestCore
import Foundation
import NIOCore
import NIOHTTP1

/// The provider API over HTTP (AsyncHTTPClient): what `crest psp-sim` serves.
///
/// Failures are sorted for the caller: no answer, a 5xx or a 429 is `ProviderError.unavailable`
/// (worth retrying), a 404 is `.notFound`, another 4xx is `.rejected`.
package struct HTTPPaymentProvider: PaymentProvider {
    private let http: HTTPClient
    private let baseURL: String
    private let apiKey: String?
    private let decoder = JSONDecoder()
    private let encoder = JSONEncoder()

    /// A client whose connection pool holds `connections` connections to the provider: calls
    /// beyond the pool wait for a connection inside their deadline, so the pool must be at least
    /// as large as the guard's bulkhead, or queueing looks like a slow provider to the breaker.
    ///
    /// A connection that cannot be made fails the call at once (AsyncHTTPClient would otherwise
    /// retry it until the guard's deadline, and a refused connection would look like a timeout);
    /// the guard retries the call itself, with backoff. An idle connection is dropped after
    /// `OutboundHTTP.idleTimeout`, before common servers close it.
    ///
    /// `traced`: a client span per call, with the trace context sent along — off where no tracer
    /// is bootstrapped (AsyncHTTPClient would otherwise parse each URL and build each span's
    /// attributes for the no-op tracer).
    package static func makeClient(connections: Int, traced: Bool = true) -> HTTPClient {
        HTTPClient(
            eventLoopGroupProvider: .singleton, configuration: clientConfiguration(connections: connections, traced: traced))
    }

    /// The configuration of `makeClient(connections:traced:)`.
    package static func clientConfiguration(connections: Int, traced: Bool = true) -> HTTPClient.Configuration {
        var pool = HTTPClient.Configuration.ConnectionPool(
            idleTimeout: OutboundHTTP.idleTimeout, concurrentHTTP1ConnectionsPerHostSoftLimit: connections)
        pool.retryConnectionEstablishment = false
        var configuration = HTTPClient.Configuration(connectionPool: pool)
        configuration.timeout.connect = .seconds(2)
        if !traced { configuration.tracing.tracer = nil }
        return configuration
    }

    package init(http: HTTPClient, baseURL: String, apiKey: String? = nil) {
        self.http = http
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.apiKey = apiKey
    }

    package func createPayment(_ request: PaymentRequest) async throws -> ProviderPayment {
        let body = ProviderAPI.CreateIntent(
            amount: request.amount.amount, currency: request.amount.currency.code, reference: request.orderID.description)
        return try await intent(
            .POST, "/v1/payment_intents", key: request.idempotencyKey, body: try encoder.encode(body))
    }

    package func payment(id: String) async throws -> ProviderPayment {
        try await intent(.GET, "/v1/payment_intents/\(Self.escaped(id))")
    }

    package func refund(paymentID: String, idempotencyKey: String) async throws -> ProviderPayment {
        try await intent(.POST, "/v1/payment_intents/\(Self.escaped(paymentID))/refund", key: idempotencyKey)
    }

    package func statement(from: Date, to: Date) async throws -> [StatementRow] {
        let window = "from=\(Int64(from.timeIntervalSince1970.rounded(.down)))&to=\(Int64(to.timeIntervalSince1970.rounded(.up)))"
        var rows: [StatementRow] = []
        var after: String?
        repeat {
            var path = "/v1/statements?\(window)&format=json&limit=10000"
            if let after { path += "&after=\(after)" }
            let data = try await send(.GET, path)
            guard let page = try? decoder.decode(ProviderAPI.StatementPage.self, from: data) else {
                throw ProviderError.rejected(status: 200, detail: "unreadable statement page")
            }
            rows += page.lines.map { line in
                StatementRow(
                    lineID: line.id, kind: line.kind == .refund ? .refund : .charge, paymentID: line.paymentId,
                    reference: line.reference, amount: line.amount, currency: line.currency, fee: line.fee, status: line.status,
                    createdAt: Date(timeIntervalSince1970: Double(line.created)),
                    settledAt: Date(timeIntervalSince1970: Double(line.settled)))
            }
            guard page.next != after else { break }
            after = page.next
        } while after != nil
        return rows
    }

    private func intent(_ method: HTTPMethod, _ path: String, key: String? = nil, body: Data? = nil) async throws
        -> ProviderPayment
    {
        let data = try await send(method, path, key: key, body: body)
        guard let intent = try? decoder.decode(ProviderAPI.Intent.self, from: data), let payment = intent.payment else {
            throw ProviderError.rejected(status: 200, detail: "unreadable payment intent")
        }
        return payment
    }

    private func send(_ method: HTTPMethod, _ path: String, key: String? = nil, body: Data? = nil) async throws -> Data {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let apiKey { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        if let key { request.headers.add(name: "Idempotency-Key", value: key) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response: HTTPClientResponse
        let buffer: ByteBuffer
        do {
            // The guard around every call sets the deadline; this one only stops a runaway call. A
            // call whose connection was lost before its answer (a kept-alive connection the provider
            // closed as the request went out) is sent once more at once: every call is a `GET` or
            // carries its `Idempotency-Key`, and the guard's retry would count it as a failure.
            (response, buffer) = try await OutboundHTTP.retryingLostConnection {
                let response = try await http.execute(request, timeout: .seconds(60))
                return (response, try await response.body.collect(upTo: 4 << 20))
            }
        } catch let error as ProviderError {
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw ProviderError.unavailable(Unavailable(Self.cause(of: error), "\(method) \(path): \(error)"))
        }
        let data = Data(buffer.readableBytesView)
        switch response.status.code {
        case 200..<300: return data
        case 404: throw ProviderError.notFound
        case 429, 500...:
            throw ProviderError.unavailable(Unavailable(.status, "\(method) \(path) answered \(response.status.code)"))
        default:
            throw ProviderError.rejected(status: Int(response.status.code), detail: String(decoding: data, as: UTF8.self))
        }
    }

    /// A deadline that ran out is a timeout; anything else before an answer (refused, reset,
    /// unresolvable, TLS) is a connection error.
    static func cause(of error: any Error) -> Unavailable.Cause {
        switch error {
        case let error as HTTPClientError
        where error == .deadlineExceeded || error == .readTimeout
            || error == .connectTimeout || error == .writeTimeout:
            .timeout
        default:
            .connection
        }
    }

    private static let idCharacters = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-_.~"))

    private static func escaped(_ id: String) -> String {
        id.addingPercentEncoding(withAllowedCharacters: idCharacters) ?? id
    }
}
