import AsyncHTTPClient
import CrestCore
import CrestFixtures
import CrestPayments
import CrestTestSupport
import Foundation
import Logging
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
