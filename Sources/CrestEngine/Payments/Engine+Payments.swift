import CrestCore
import CrestPayments
import CrestStore
import Foundation
import Logging

extension Engine {
    /// Records what the provider said about a payment (a verified webhook): duplicates change
    /// nothing, a success pays the order once (or, after it closed, starts a refund).
    package func recordPayment(_ observation: PaymentObservation) async throws -> PaymentRecord {
        let record = try await withStore("record payment") { try await lifecycle.record(observation) }
        if record.refundEnqueued { jobs.notify(runAt: clock()) }
        return record
    }

    /// The order with its payment, created at the provider now if it has none yet — the buyer's
    /// checkout, ahead of the payment creation jobs (`OrderLifecycle.checkout`). The provider out
    /// of reach or holding calls back is a `503` to retry; a refusal of its own, a `502`.
    package func checkout(_ order: Order) async throws -> Order {
        guard let provider else { throw NoPaymentProvider() }
        return try await withStore("checkout") {
            do {
                return try await lifecycle.checkout(order, provider: provider)
            } catch let error as ProviderError {
                throw checkoutFailure(error, of: order.id)
            }
        }
    }

    /// What a buyer at checkout is told of a failed provider call.
    private func checkoutFailure(_ error: ProviderError, of id: OrderID) -> any DomainError {
        logger.warning("checkout: the payment could not be created", metadata: ["order": "\(id)", "error": "\(error)"])
        switch error {
        case .unavailable(let reason):
            return UnavailableError(
                reason: "the payment provider is unavailable (\(reason.cause.rawValue)); the payment was not created",
                retryAfterSeconds: reason.cause == .circuitOpen ? 5 : 1)
        case .rejected(let status, let detail):
            return PaymentProviderRefused(detail: "the provider refused to create the payment (\(status)): \(detail)")
        case .notFound:
            return PaymentProviderRefused(detail: "the provider answered that it does not know the payment")
        }
    }

    /// The provider guard's breaker and bulkhead, when the provider is a `GuardedProvider`.
    package var providerStatus: GuardedProvider.Status? { (provider as? GuardedProvider)?.status }

    /// Whether a payment provider is configured.
    package var hasPaymentProvider: Bool { provider != nil }
}
