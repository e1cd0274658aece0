import CrestCore
import CrestEngine
import CrestFixtures
import CrestPayments
import CrestStore
import CrestTestSupport
import Foundation
import Synchronization
import Testing

/// Whatever the payment provider answers is untrusted input: an answer that cannot be true is
/// refused with a clear record, never written half-way or retried without end.
@Suite("Answers of the payment provider")
struct ProviderAnswerTests {
    @Test("a payment id already bound to another order flags the order, is counted, and is not retried")
    func paymentIDTaken() async throws {
        _ = TestMetrics.registry
        let series = #"crest_provider_answers_refused_total{reason="payment_id_taken"}"#
        let before = TestMetrics.value(of: series) ?? 0
        let provider = OneIDProvider(id: "pi_restarted_sandbox")
        try await EngineFixture.with(configuration: .quickJobs, provider: provider) { fixture in
            let engine = fixture.engine
            let sale = try await fixture.sale(stock: 2)
            let first = try await engine.placeOrder(
                OrderRequest(saleID: sale.id, idempotencyKey: "k1", buyer: "ana", quantity: 1)
            ).order
            let bound = try await eventually(timeout: .seconds(60)) { try await engine.order(first.id).payment?.id == provider.id }
            #expect(bound, "the first order gets the payment")

            let second = try await engine.placeOrder(
                OrderRequest(saleID: sale.id, idempotencyKey: "k2", buyer: "bob", quantity: 1)
            ).order
            let flagged = try await eventually(timeout: .seconds(60)) { try await engine.order(second.id).flag != nil }
            let order = try await engine.order(second.id)
            #expect(flagged && order.flag?.reason == .paymentIDTaken, "\(order)")
            #expect(order.payment == nil, "nothing of the answer was recorded")
            #expect(order.status == .pendingPayment, "it expires at the end of its window like any unpaid order")
            #expect(try await engine.order(first.id).payment?.id == provider.id, "the holder keeps its payment")

            // Given up at once, not retried: its batch's job ends, and hands nothing over.
            let batches = try await engine.jobs(
                matching: JobFilter(kind: PaymentJobs.createBatch.name), after: nil, limit: 10)
            let batch = try #require(batches.first { $0.payload.contains(second.id.description) })
            #expect(try await eventually { try await engine.job(batch.id).state == .completed })
            #expect(try await engine.job(batch.id).attempt == 1)
            let own = try await engine.jobs(matching: JobFilter(kind: PaymentJobs.create.name), after: nil, limit: 10)
            #expect(own.isEmpty, "handed over: \(own)")
            #expect(provider.creations(of: second.id) == 1, "asked once")
            // At least: the counter is the process's, and another test may refuse a provider's answer too.
            #expect((TestMetrics.value(of: series) ?? 0) >= before + 1)
        }
    }
}

/// A provider that gives every payment the same id, as a restarted sandbox with a fixed seed did.
private final class OneIDProvider: PaymentProvider {
    let id: String
    private let created = Mutex<[OrderID: Int]>([:])

    init(id: String) { self.id = id }

    func creations(of order: OrderID) -> Int { created.withLock { $0[order] ?? 0 } }

    func createPayment(_ request: PaymentRequest) async throws -> ProviderPayment {
        created.withLock { $0[request.orderID, default: 0] += 1 }
        return ProviderPayment(
            id: id, reference: request.orderID.description, amount: request.amount, status: .created, payURL: nil)
    }

    func payment(id: String) async throws -> ProviderPayment { throw ProviderError.notFound }

    func refund(paymentID: String, idempotencyKey: String) async throws -> ProviderPayment {
        throw ProviderError.notFound
    }

    func statement(from: Date, to: Date) async throws -> [StatementRow] { [] }
}
