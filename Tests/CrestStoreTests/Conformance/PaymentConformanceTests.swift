import CrestCore
import CrestStore
import CrestTestSupport
import Foundation
import Testing

@Suite("Store conformance: payments")
struct PaymentConformanceTests {
    static func observation(
        _ order: Order, _ paymentID: String, _ status: PaymentStatus, payURL: String? = nil, event: String? = nil
    ) -> PaymentObservation {
        PaymentObservation(orderID: order.id, payment: OrderPayment(id: paymentID, status: status, payURL: payURL), eventID: event)
    }

    @Test(
        "a success pays the order once, keeping the payment's id and pay URL; its duplicate changes nothing; only the first observation attaches the payment",
        arguments: StoreKind.allCases)
    func paidOnce(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (sale, orders) = try await TransitionConformanceTests.pendingOrders(1, on: store)
            let results = try await store.recordPayments(
                [
                    // The provider's answer (no event id), then its `created` webhook, then success.
                    Self.observation(orders[0], "pi_1", .created, payURL: "http://psp/pay/pi_1"),
                    Self.observation(orders[0], "pi_1", .created, payURL: "http://psp/pay/pi_1", event: "evt_1"),
                    Self.observation(orders[0], "pi_1", .succeeded, event: "evt_2"),
                    Self.observation(orders[0], "pi_1", .succeeded, event: "evt_2"),
                ], at: millisecondNow())
            #expect(try results.map { try $0.get().attachedPayment } == [true, false, false, false])
            let paid = try results[2].get()
            #expect(paid.transition?.change == .applied && paid.order.status == .paid)
            #expect(paid.order.payment == OrderPayment(id: "pi_1", status: .succeeded, payURL: "http://psp/pay/pi_1"))
            #expect(try results[3].get().duplicate)
            #expect(try await store.sale(sale.id)?.stock == StockCounters(total: 5, available: 4, reserved: 0, sold: 1))
        }
    }

    @Test("an observation naming another payment than the order's is refused as a mismatch", arguments: StoreKind.allCases)
    func mismatch(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (_, orders) = try await TransitionConformanceTests.pendingOrders(1, on: store)
            let results = try await store.recordPayments(
                [
                    Self.observation(orders[0], "pi_1", .created, event: "evt_1"),
                    Self.observation(orders[0], "pi_other", .succeeded),
                ], at: millisecondNow())
            #expect(throws: PaymentRecordFailure.mismatch(PaymentMismatchError(orderID: orders[0].id, known: "pi_1", observed: "pi_other")))
            {
                try results[1].get()
            }
            #expect(try await store.order(orders[0].id)?.status == .pendingPayment)
        }
    }

    @Test("an observation for an unknown order is refused", arguments: StoreKind.allCases)
    func unknownOrder(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let results = try await store.recordPayments(
                [PaymentObservation(orderID: .make(), payment: OrderPayment(id: "pi_x", status: .created, payURL: nil))],
                at: millisecondNow())
            #expect(throws: PaymentRecordFailure.orderNotFound) { try results[0].get() }
        }
    }

    @Test("a payment another order holds is refused, and nothing is recorded for the order", arguments: StoreKind.allCases)
    func paymentTaken(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (sale, orders) = try await TransitionConformanceTests.pendingOrders(2, on: store)
            let now = millisecondNow()
            _ = try await store.recordPayment(Self.observation(orders[0], "pi_1", .succeeded, event: "evt_1"), at: now)
            // Refused one by one, not as a constraint error thrown for the whole batch.
            let taken = try await store.recordPayments([Self.observation(orders[1], "pi_1", .succeeded, event: "evt_t")], at: now)
            #expect(
                throws: PaymentRecordFailure.paymentTaken(PaymentTakenError(orderID: orders[1].id, paymentID: "pi_1", heldBy: orders[0].id))
            ) {
                try taken[0].get()
            }
            #expect(try await store.order(orders[1].id)?.payment == nil)
            #expect(try await store.sale(sale.id)?.stock == StockCounters(total: 5, available: 3, reserved: 1, sold: 1))
        }
    }

    @Test("a success after the order expired flags it and enqueues a refund; the refund ends it refunded", arguments: StoreKind.allCases)
    func lateSuccess(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (sale, orders) = try await TransitionConformanceTests.pendingOrders(1, on: store)
            let now = millisecondNow()
            _ = try await store.transition(orders[0].id, by: .expire, at: now)
            let late = try await store.recordPayment(Self.observation(orders[0], "pi_2", .succeeded, event: "evt_3"), at: now)
            #expect(late.refundEnqueued && late.order.status == .expired)
            #expect(late.order.flag?.reason == .confirmAfterCancel)
            let refund = try await store.recordPayment(Self.observation(orders[0], "pi_2", .refunded, event: "evt_4"), at: now)
            #expect(refund.order.status == .refunded)
            #expect(try await store.sale(sale.id)?.stock == StockCounters(total: 5, available: 5, reserved: 0, sold: 0))
            #expect(try await store.events(of: orders[0].id).map(\.kind) == [.created, .expired, .refunded])
        }
    }
}

@Suite("Store conformance: merchant webhooks")
struct WebhookConformanceTests {
    /// An endpoint for every event and one for `paid` only, and one order paid: events 1 and 2.
    static func paidOrder(on store: any Store) async throws -> (all: WebhookEndpoint, paidOnly: WebhookEndpoint, order: Order) {
        let now = millisecondNow()
        let all = WebhookEndpoint(
            id: .make(), url: "http://127.0.0.1:1/all", secret: String(repeating: "s", count: 16),
            eventTypes: Set(OrderEvent.Kind.allCases), createdAt: now)
        let paidOnly = WebhookEndpoint(
            id: .make(), url: "http://127.0.0.1:1/paid", secret: String(repeating: "t", count: 16), eventTypes: [.paid], createdAt: now)
        try await store.createWebhookEndpoint(all)
        try await store.createWebhookEndpoint(paidOnly)
        let (_, orders) = try await TransitionConformanceTests.pendingOrders(1, on: store)
        _ = try await store.transition(orders[0].id, by: .pay, at: now)
        return (all, paidOnly, orders[0])
    }

    @Test("endpoints are kept and listed in id order", arguments: StoreKind.allCases)
    func endpointsListed(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (all, paidOnly, _) = try await Self.paidOrder(on: store)
            #expect(try await store.webhookEndpoints() == [all, paidOnly].sorted { $0.id < $1.id })
        }
    }

    @Test("each event gets one delivery job per endpoint that wants its type", arguments: StoreKind.allCases)
    func deliveriesPerEndpoint(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (all, paidOnly, order) = try await Self.paidOrder(on: store)
            let jobs = try await store.jobs(matching: JobFilter(kind: WebhookJobs.deliver.name), after: nil, limit: 10)
            let deliveries = Set(jobs.compactMap { try? WebhookJobs.deliver.parameters(of: $0) })
            #expect(
                deliveries == [
                    .init(endpointId: all.id, orderId: order.id, sequence: 1),
                    .init(endpointId: all.id, orderId: order.id, sequence: 2),
                    .init(endpointId: paidOnly.id, orderId: order.id, sequence: 2),
                ])
        }
    }

    @Test("a delivery is told whether the order's event before it reached the endpoint", arguments: StoreKind.allCases)
    func toldInOrder(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (all, _, order) = try await Self.paidOrder(on: store)
            let second = WebhookJobs.Delivery(endpointId: all.id, orderId: order.id, sequence: 2)
            let before = try #require(try await store.webhookDelivery(second))
            #expect(before.event.kind == .paid && before.endpoint == all && !before.previousDelivered)
            try await store.markDelivered(.init(endpointId: all.id, orderId: order.id, sequence: 1), at: millisecondNow())
            #expect(try await store.webhookDelivery(second)?.previousDelivered == true)
        }
    }

    @Test("an order's deliveries, by sequence then endpoint: owed until delivered, then with the time", arguments: StoreKind.allCases)
    func deliveriesOfOrder(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (all, paidOnly, order) = try await Self.paidOrder(on: store)
            let owed = try await store.deliveries(of: order.id)
            let second = [all.id, paidOnly.id].sorted { $0.description < $1.description }
            #expect(owed.map(\.sequence) == [1, 2, 2])
            #expect(owed.map(\.endpointID) == [all.id] + second)
            #expect(owed.allSatisfy { $0.deliveredAt == nil })
            let at = millisecondNow()
            try await store.markDelivered(.init(endpointId: all.id, orderId: order.id, sequence: 1), at: at)
            #expect(try await store.deliveries(of: order.id).first == EventDelivery(endpointID: all.id, sequence: 1, deliveredAt: at))
            #expect(try await store.deliveries(of: .make()).isEmpty)
        }
    }

    @Test("an endpoint is deleted once; its deliveries then find no endpoint", arguments: StoreKind.allCases)
    func endpointDeleted(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (all, paidOnly, order) = try await Self.paidOrder(on: store)
            let now = millisecondNow()
            #expect(try await store.deleteWebhookEndpoint(paidOnly.id, at: now))
            #expect(try await store.deleteWebhookEndpoint(paidOnly.id, at: now) == false)
            #expect(try await store.webhookDelivery(.init(endpointId: paidOnly.id, orderId: order.id, sequence: 2))?.endpoint == nil)
            #expect(try await store.webhookEndpoints() == [all])
        }
    }
}
