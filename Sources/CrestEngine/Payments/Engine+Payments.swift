import CrestCore
import CrestPayments
import CrestStore
import Foundation

extension Engine {
    /// Records what the provider said about a payment (a verified webhook): duplicates change
    /// nothing, a success pays the order once (or, after it closed, starts a refund).
    package func recordPayment(_ observation: PaymentObservation) async throws -> PaymentRecord {
        let record = try await withStore("record payment") { try await lifecycle.record(observation) }
        if record.refundEnqueued { jobs.notify(runAt: clock()) }
        return record
    }

    /// The provider guard's breaker and bulkhead, when the provider is a `GuardedProvider`.
    package var providerStatus: GuardedProvider.Status? { (provider as? GuardedProvider)?.status }

    /// Whether a payment provider is configured.
    package var hasPaymentProvider: Bool { provider != nil }
}
