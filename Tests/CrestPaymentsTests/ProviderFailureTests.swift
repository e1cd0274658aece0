import AsyncHTTPClient
import CrestCore
import CrestFixtures
import CrestPayments
import CrestTestSupport
import Foundation
import Logging
import NIOCore
import Testing

/// A provider that cannot be reached is told apart from one that does not answer: the logs and
/// `crest_provider_calls_total{outcome}` say "connection_error" or "timeout", and a refused
/// connection fails at once instead of waiting out the call's deadline.
@Suite("Provider failures told apart")
struct ProviderFailureTests {
    static let request = PaymentRequest(
        orderID: OrderID.make(), amount: Money(amount: 100, currency: Currency("CNY")!), idempotencyKey: "k")

    @Test("a refused connection is a connection error, at once, not a timeout")
    func refusedConnection() async throws {
        let socket = try LoopbackSocket()
        socket.close()
        // The client does not retry a refused connection until the call's deadline (AsyncHTTPClient's
        // default): the guard retries calls itself, and a refusal must surface as one.
        #expect(!HTTPPaymentProvider.clientConfiguration(connections: 1).connectionPool.retryConnectionEstablishment)
        let failure = try await failedCall(port: socket.port, timeout: .seconds(60))
        #expect(failure.cause == .connection, "\(failure)")
        #expect(failure.elapsed < .seconds(60), "refused after \(failure.elapsed): it waited for the deadline")
    }

    @Test("a provider that accepts and never answers is a timeout")
    func noAnswer() async throws {
        let socket = try LoopbackSocket()
        let failure = try await failedCall(port: socket.port, timeout: .milliseconds(300))
        #expect(failure.cause == .timeout, "\(failure)")
        socket.close()
    }

    @Test("a call whose connection closed before its answer is sent once more at once, with its key; twice is a connection error")
    func lostConnection() async throws {
        // A kept-alive connection the provider closes as a call goes out: the pool keeps an idle
        // connection for less time than common servers do, and the call is sent once more.
        #expect(HTTPPaymentProvider.clientConfiguration(connections: 1).connectionPool.idleTimeout < .seconds(5))
        let intent = try String(
            decoding: JSONEncoder().encode(
                ProviderAPI.Intent(
                    id: "pi_1", reference: Self.request.orderID.description, amount: 100, currency: "CNY", status: .created,
                    payUrl: "https://pay.example/pi_1", created: 0, updated: 0)), as: UTF8.self)
        let answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(intent.utf8.count)\r\n\r\n\(intent)"
        try await ScriptedServer.with([.close, .answer(answer)]) { server in
            let result = await Self.createPayment(port: server.port)
            #expect((try? result.get())?.id == "pi_1", "\(result)")
            #expect(server.requests.count == 2)
            #expect(server.requests.allSatisfy { $0.lowercased().contains("idempotency-key: k\r\n") }, "\(server.requests)")
        }
        try await ScriptedServer.with([.close, .close, .answer(answer)]) { server in
            let result = await Self.createPayment(port: server.port)
            guard case .failure(ProviderError.unavailable(let reason)) = result else {
                Issue.record("a second lost connection was not the call's failure: \(result)")
                return
            }
            #expect(reason.cause == .connection, "\(reason)")
            #expect(server.requests.count == 2)
        }
    }

    /// One unguarded `createPayment` to `127.0.0.1:port`, on a client of its own.
    private static func createPayment(port: Int) async -> Result<ProviderPayment, any Error> {
        let http = HTTPPaymentProvider.makeClient(connections: 4)
        let provider = HTTPPaymentProvider(http: http, baseURL: "http://127.0.0.1:\(port)")
        let result: Result<ProviderPayment, any Error>
        do {
            result = .success(try await provider.createPayment(request))
        } catch {
            result = .failure(error)
        }
        try? await http.shutdown()
        return result
    }

    /// One guarded `createPayment` to `127.0.0.1:port`, which must fail as unavailable; checks that
    /// the call was counted under its cause.
    private func failedCall(port: Int, timeout: Duration) async throws
        -> (cause: Unavailable.Cause, elapsed: Duration)
    {
        _ = TestMetrics.registry
        let http = HTTPPaymentProvider.makeClient(connections: 4)
        let provider = GuardedProvider(
            HTTPPaymentProvider(http: http, baseURL: "http://127.0.0.1:\(port)"),
            configuration: .init(timeout: timeout, attempts: 1), logger: Logger(label: "test"))
        let started = ContinuousClock.now
        let result: Result<ProviderPayment, any Error>
        do {
            result = .success(try await provider.createPayment(Self.request))
        } catch {
            result = .failure(error)
        }
        let elapsed = ContinuousClock.now - started
        try await http.shutdown()
        guard case .failure(ProviderError.unavailable(let reason)) = result else {
            Issue.record("expected the provider to be unavailable, got \(result)")
            return (.status, elapsed)
        }
        let series = #"crest_provider_calls_total{call="create_payment",outcome="\#(reason.cause.rawValue)"}"#
        #expect((TestMetrics.value(of: series) ?? 0) >= 1, "\(series) not counted")
        return (reason.cause, elapsed)
    }
}
