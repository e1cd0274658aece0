import Testing

@testable import CrestEngine

@Suite("Merchant webhooks: waiting for an earlier event")
struct WebhookOrderingTests {
    @Test(
        "a delivery waiting for its order's earlier event looks again after a second at first, a tenth of its wait later on, at most a minute"
    )
    func recheckBacksOffWithTheWait() {
        #expect(WebhookDeliverer.orderingRecheck(waited: 0) == .seconds(1))
        #expect(WebhookDeliverer.orderingRecheck(waited: -5) == .seconds(1))  // a clock that stepped back
        #expect(WebhookDeliverer.orderingRecheck(waited: 9) == .seconds(1))
        #expect(WebhookDeliverer.orderingRecheck(waited: 45) == .milliseconds(4_500))
        #expect(WebhookDeliverer.orderingRecheck(waited: 600) == .seconds(60))
        #expect(WebhookDeliverer.orderingRecheck(waited: 86_400) == .seconds(60))
    }
}
