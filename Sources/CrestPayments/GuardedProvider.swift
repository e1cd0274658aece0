import CrestConcurrency
import CrestCore
import Foundation
import Logging
import Metrics

/// Puts every call to a provider behind a timeout, a circuit breaker, a bulkhead and retries.
///
/// Calls go through in that order: the breaker (refused at once when open), the bulkhead (refused
/// at once when `maxInFlight` calls are out), then the call with its deadline. A call that ends
/// with `ProviderError.unavailable` (no connection, 5xx, timeout) counts as failed for the breaker and
/// is retried after a backoff, up to `attempts` times — every call of `PaymentProvider` is safe
/// to repeat (the changing ones carry idempotency keys). A refusal (4xx) means the provider is
/// healthy: it counts as a success for the breaker and is not retried.
package final class GuardedProvider: PaymentProvider {
    package struct Configuration: Sendable {
        package var timeout: Duration
        /// A whole statement (all its pages) is one call that may take much longer than a payment's.
        package var statementTimeout: Duration
        package var attempts: Int
        package var retryBase: Duration
        package var maxInFlight: Int
        package var breaker: CircuitBreaker.Configuration

        package init(
            timeout: Duration = .seconds(3), statementTimeout: Duration = .seconds(120), attempts: Int = 3,
            retryBase: Duration = .milliseconds(100), maxInFlight: Int = 64, breaker: CircuitBreaker.Configuration = .init()
        ) {
            self.timeout = timeout
            self.statementTimeout = statementTimeout
            self.attempts = max(1, attempts)
            self.retryBase = retryBase
            self.maxInFlight = maxInFlight
            self.breaker = breaker
        }
    }

    /// The guard at one moment, for operators.
    package struct Status: Sendable, Hashable {
        package var breaker: CircuitBreaker.Snapshot
        package var inFlight: Int
        package var maxInFlight: Int
        package var bulkheadRejected: Int
    }

    package let breaker: CircuitBreaker
    private let bulkhead: Bulkhead
    private let provider: any PaymentProvider
    private let configuration: Configuration
    private let logger: Logger

    package init(_ provider: any PaymentProvider, configuration: Configuration = .init(), logger: Logger) {
        self.provider = provider
        self.configuration = configuration
        self.logger = logger
        self.bulkhead = Bulkhead(limit: configuration.maxInFlight)
        let stateGauge = Gauge(label: "crest_provider_breaker_state")
        stateGauge.record(0)
        self.breaker = CircuitBreaker(configuration: configuration.breaker) { state in
            let value =
                switch state {
                case .closed: 0
                case .halfOpen: 1
                case .open: 2
                }
            stateGauge.record(value)
            logger.warning("payment provider circuit \(state.rawValue)")
        }
    }

    package var status: Status {
        Status(
            breaker: breaker.snapshot, inFlight: bulkhead.inFlight, maxInFlight: bulkhead.limit,
            bulkheadRejected: bulkhead.rejected)
    }

    package func createPayment(_ request: PaymentRequest) async throws -> ProviderPayment {
        try await call("create_payment") { try await $0.createPayment(request) }
    }

    package func payment(id: String) async throws -> ProviderPayment {
        try await call("get_payment") { try await $0.payment(id: id) }
    }

    package func refund(paymentID: String, idempotencyKey: String) async throws -> ProviderPayment {
        try await call("refund") { try await $0.refund(paymentID: paymentID, idempotencyKey: idempotencyKey) }
    }

    package func statement(from: Date, to: Date) async throws -> [StatementRow] {
        try await call("statement", timeout: configuration.statementTimeout) { try await $0.statement(from: from, to: to) }
    }

    private func call<T: Sendable>(
        _ name: String, timeout: Duration? = nil, _ body: @escaping @Sendable (any PaymentProvider) async throws -> T
    ) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try await once(name, timeout: timeout ?? configuration.timeout, body)
            } catch let error as ProviderError {
                guard case .unavailable = error, attempt < configuration.attempts else { throw error }
                let delay = configuration.retryBase * (1 << (attempt - 1))
                try await Task.sleep(for: delay * Double.random(in: 0.5...1.5))
                attempt += 1
            }
        }
    }

    private func once<T: Sendable>(
        _ name: String, timeout: Duration, _ body: @escaping @Sendable (any PaymentProvider) async throws -> T
    ) async throws -> T {
        do {
            try breaker.acquire()
        } catch {
            count(name, Unavailable.Cause.circuitOpen.rawValue)
            throw ProviderError.unavailable(Unavailable(.circuitOpen, "circuit open"))
        }
        do {
            try bulkhead.enter()
        } catch {
            // The call never started: hand the breaker's permit back without an outcome.
            breaker.release()
            count(name, Unavailable.Cause.bulkheadFull.rawValue)
            throw ProviderError.unavailable(Unavailable(.bulkheadFull, "too many calls in flight"))
        }
        defer { bulkhead.leave() }
        let started = ContinuousClock.now
        let provider = self.provider
        do {
            let result = try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask { try await body(provider) }
                group.addTask {
                    await SharedDeadlines.shared.wait(until: .now + timeout)
                    try Task.checkCancellation()
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let value = first else {
                    throw ProviderError.unavailable(Unavailable(.timeout, "no answer within \(timeout)"))
                }
                return value
            }
            finish(name, "success", started: started, failed: false)
            return result
        } catch let error as ProviderError {
            switch error {
            case .unavailable(let reason):
                finish(name, reason.cause.rawValue, started: started, failed: true)
            case .rejected, .notFound:
                finish(name, "refused", started: started, failed: false)
            }
            throw error
        } catch {
            finish(name, "failure", started: started, failed: true)
            throw error
        }
    }

    private func finish(_ name: String, _ outcome: String, started: ContinuousClock.Instant, failed: Bool) {
        let duration = ContinuousClock.now - started
        breaker.record(failed: failed, duration: duration)
        count(name, outcome)
        Timer(label: "crest_provider_call_duration_seconds", dimensions: [("call", name)], preferredDisplayUnit: .seconds)
            .record(duration: duration)
    }

    private func count(_ name: String, _ outcome: String) {
        Counter(label: "crest_provider_calls_total", dimensions: [("call", name), ("outcome", outcome)]).increment()
    }
}
