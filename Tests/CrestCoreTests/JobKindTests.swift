import CrestCore
import Foundation
import Testing

/// A job kind and its parameters' type are declared together; what is enqueued reads back as the
/// same value, and a payload of another shape is a typed error, not a crash.
@Suite("Typed job kinds")
struct JobKindTests {
    static func claimed(_ job: NewJob) -> Job {
        Job(
            id: JobID(1), kind: job.kind, payload: job.payload, state: .running, attempt: 1, maxAttempts: job.maxAttempts,
            runAt: job.runAt ?? Date(), createdAt: Date())
    }

    @Test("hand-written payloads read back as the parameters they were written from")
    func payloadsRoundTrip() throws {
        let order = OrderID.make()
        let expiry = OrderJobs.expiry(of: order, at: Date(timeIntervalSince1970: 60))
        #expect(expiry.kind == "order.expire" && expiry.maxAttempts == 25 && expiry.runAt == Date(timeIntervalSince1970: 60))
        #expect(try OrderJobs.expire.parameters(of: Self.claimed(expiry)) == OrderJob(orderId: order))
        #expect(try JSONDecoder().decode(OrderJob.self, from: Data(expiry.payload.utf8)) == OrderJob(orderId: order))

        let delivery = WebhookJobs.Delivery(endpointId: .make(), orderId: order, sequence: 7)
        let job = WebhookJobs.delivery(delivery)
        #expect(try WebhookJobs.deliver.parameters(of: Self.claimed(job)) == delivery)
        let encoded = String(decoding: try JSONEncoder().encode(delivery), as: UTF8.self)
        #expect(try JSONDecoder().decode(WebhookJobs.Delivery.self, from: Data(encoded.utf8)) == delivery)

        #expect(PaymentJobs.creation(of: order).uniqueKey == "payment.create:\(order)")
        #expect(OrderJobs.confirmation(of: order).uniqueKey == "order.confirm:\(order)")
    }

    @Test("a job of another kind, or a payload of another shape, is a JobPayloadError naming the kind")
    func wrongPayloads() {
        let delivery = Self.claimed(WebhookJobs.delivery(.init(endpointId: .make(), orderId: .make(), sequence: 1)))
        #expect(throws: JobPayloadError.self) { try OrderJobs.expire.parameters(of: delivery) }
        let garbled = Self.claimed(NewJob(kind: "order.expire", payload: #"{"orderId":"not-an-id"}"#))
        do {
            _ = try OrderJobs.expire.parameters(of: garbled)
            Issue.record("a garbled payload was read")
        } catch {
            #expect(error.kind == "order.expire" && error.description.contains("not-an-id"))
        }
    }
}
