import CrestCore
import CrestStore
import CrestTestSupport
import Foundation
import Testing

/// One suite, every store: what the engine relies on, checked against the embedded store and the
/// PostgreSQL store alike.
@Suite("Store conformance")
struct StoreConformanceTests {
    @Test("sales are stored with their counters and listed in id order", arguments: StoreKind.allCases)
    func sales(kind: StoreKind) async throws {
        _ = try await kind.with { open in
            let store = try await open()
            let first = makeSale(stock: 10)
            let second = makeSale(stock: 20, perBuyerLimit: 2, endsAt: millisecondNow(3600))
            try await store.createSale(first)
            try await store.createSale(second)
            #expect(try await store.sale(first.id) == first)
            #expect(try await store.sale(second.id) == second)
            #expect(try await store.sale(.make()) == nil)
            #expect(try await store.sales(after: nil, limit: 10).map(\.id) == [first.id, second.id])
            #expect(try await store.sales(after: first.id, limit: 10).map(\.id) == [second.id])
            #expect(try await store.sales(after: nil, limit: 1).map(\.id) == [first.id])
        }
    }

    @Test("risk rules are kept with their match, note and expiry, listed oldest first, and deleted once", arguments: StoreKind.allCases)
    func riskRules(kind: StoreKind) async throws {
        _ = try await kind.with { open in
            let store = try await open()
            let now = millisecondNow(0)
            let rules = [
                RiskRule(id: .make(now: now), match: .buyer("mallory"), note: "chargebacks", createdAt: now),
                RiskRule(
                    id: .make(now: now + 0.001), match: .address("203.0.113.0/24"), createdAt: now,
                    expiresAt: millisecondNow(3600)),
                RiskRule(
                    id: .make(now: now + 0.002),
                    match: .velocity(
                        .init(scope: .buyer, measure: .distinctKeys, limit: 5, windowSeconds: 60, coolDownSeconds: 600)),
                    createdAt: now),
            ]
            for rule in rules { try await store.createRiskRule(rule) }
            #expect(try await store.riskRules() == rules)
            #expect(try await store.deleteRiskRule(rules[1].id, at: now))
            #expect(try await store.deleteRiskRule(rules[1].id, at: now) == false)
            #expect(try await store.deleteRiskRule(.make(), at: now) == false)
            #expect(try await store.riskRules() == [rules[0], rules[2]])
        }
    }

    @Test("a sale's own rate limits are kept when created, replaced and removed", arguments: StoreKind.allCases)
    func saleLimits(kind: StoreKind) async throws {
        _ = try await kind.with { open in
            let store = try await open()
            var sale = makeSale(stock: 10)
            sale.limits = SaleLimits(perBuyer: RateLimit(rate: 2, burst: 4))
            try await store.createSale(sale)
            #expect(try await store.sale(sale.id)?.limits == sale.limits)
            let both = SaleLimits(perBuyer: RateLimit(rate: 1, burst: 1), perSale: RateLimit(rate: 500, burst: 900))
            var updated = try #require(try await store.updateSaleLimits(sale.id, to: both))
            #expect(updated.limits == both)
            #expect(updated.stock == sale.stock)
            #expect(try await store.sale(sale.id)?.limits == both)
            updated = try #require(try await store.updateSaleLimits(sale.id, to: .none))
            #expect(updated.limits == .none)
            #expect(try await store.sale(sale.id)?.limits == SaleLimits.none)
            #expect(try await store.updateSaleLimits(.make(), to: both) == nil)
        }
    }

    @Test(
        "a batch decides each reservation: reserved, duplicate key, buyer limit, sold out, unknown sale, not open, closed",
        arguments: StoreKind.allCases)
    func reservationRules(kind: StoreKind) async throws {
        _ = try await kind.with { open in
            let store = try await open()
            let sale = makeSale(stock: 3, perBuyerLimit: 2)
            let later = makeSale(stock: 5, startsAt: millisecondNow(3600))
            let over = makeSale(stock: 5, endsAt: millisecondNow(-0.5))
            for sale in [sale, later, over] { try await store.createSale(sale) }
            let first = try await store.reserve([
                reservation(sale, key: "k1", buyer: "ana", quantity: 2),
                reservation(sale, key: "k1", buyer: "ana", quantity: 2),  // same key again in the batch
                reservation(sale, key: "k2", buyer: "ana"),  // over ana's limit of 2
                reservation(sale, key: "k3", buyer: "bob", quantity: 2),  // only 1 left
                reservation(sale, key: "k4", buyer: "bob"),
                reservation(sale, key: "k5", buyer: "cid"),  // sold out
                reservation(makeSale(stock: 1), key: "k6", buyer: "dan"),  // no such sale
                reservation(later, key: "k7", buyer: "eve"),
                reservation(over, key: "k8", buyer: "fay"),
            ])
            let outcomes = first.outcomes
            guard case .reserved(let anas) = outcomes[0] else {
                Issue.record("\(outcomes[0])")
                return
            }
            #expect(anas.quantity == 2 && anas.status == .pendingPayment && anas.buyer == "ana")
            #expect(outcomes[1] == .duplicate(anas))
            #expect(outcomes[2] == .refused(.buyerLimitReached(limit: 2)))
            #expect(outcomes[3] == .refused(.soldOut))
            guard case .reserved(let bobs) = outcomes[4] else {
                Issue.record("\(outcomes[4])")
                return
            }
            #expect(outcomes[5] == .refused(.soldOut))
            #expect(outcomes[6] == .refused(.saleNotFound))
            #expect(outcomes[7] == .refused(.saleNotOpen(startsAt: later.startsAt)))
            #expect(outcomes[8] == .refused(.saleClosed))
            let counters = try #require(first.counters[sale.id])
            #expect(counters.counters == StockCounters(total: 3, available: 0, reserved: 3, sold: 0))

            // A later batch: the key names its order; the store's counters and orders agree.
            let again = try await store.reserve([reservation(sale, key: "k4", buyer: "bob")])
            #expect(again.outcomes == [.duplicate(bobs)])
            #expect(again.counters[sale.id]?.version == counters.version)
            #expect(try await store.sale(sale.id)?.stock == counters.counters)
            #expect(try await store.order(anas.id) == anas)
            #expect(try await store.order(saleID: sale.id, idempotencyKey: "k4") == bobs)
            #expect(try await store.order(saleID: sale.id, idempotencyKey: "k5") == nil)
            let snapshot = try #require(try await store.gateSnapshot(for: sale.id))
            #expect(snapshot.holdings == ["ana": 2, "bob": 1])
            #expect(try await store.holdings(of: "ana", in: sale.id) == 2)
            #expect(try await store.holdings(of: "cid", in: sale.id) == 0)
            #expect(try await store.holdings(of: "ana", in: later.id) == 0)
            #expect(Set(snapshot.idempotencyKeys) == ["k1", "k4"])
            #expect(snapshot.version == counters.version)
            #expect(try await store.gateSnapshot(for: .make()) == nil)
            // Each reserved order has its created event and its expiry job.
            #expect(try await store.events(of: anas.id).map(\.kind) == [.created])
            let expiries = try await store.jobs(matching: JobFilter(kind: OrderJobs.expire.name), after: nil, limit: 10)
            #expect(Set(expiries.compactMap { try? OrderJobs.expire.parameters(of: $0).orderId }) == [anas.id, bobs.id])
            #expect(expiries.allSatisfy { $0.state == .scheduled })
        }
    }

    @Test("transitions move stock and write one event each; repeats and refusals change nothing", arguments: StoreKind.allCases)
    func transitions(kind: StoreKind) async throws {
        _ = try await kind.with { open in
            let store = try await open()
            let sale = makeSale(stock: 5)
            try await store.createSale(sale)
            let placed = try await store.reserve((1...3).map { reservation(sale, key: "k\($0)", buyer: "b\($0)") })
            let orders = placed.outcomes.compactMap(\.order)
            let now = millisecondNow()
            let results = try await store.transitions(
                [
                    TransitionRequest(orderID: orders[0].id, event: .pay),
                    TransitionRequest(orderID: orders[0].id, event: .pay),
                    TransitionRequest(orderID: orders[1].id, event: .cancel),
                    TransitionRequest(orderID: orders[1].id, event: .pay),
                    TransitionRequest(orderID: .make(), event: .expire),
                ], at: now)
            #expect(results[0]?.change == .applied && results[0]?.order.status == .paid)
            #expect(results[1]?.change == .repeated)
            #expect(results[2]?.change == .applied && results[2]?.order.status == .cancelled)
            #expect(results[3]?.change == .refused)
            #expect(results[3]?.order.flag?.reason == .confirmAfterCancel)
            #expect(results[4] == nil)
            let last = try #require(results[3]?.counters)
            #expect(last.counters == StockCounters(total: 5, available: 3, reserved: 1, sold: 1))
            #expect(try await store.sale(sale.id)?.stock == last.counters)
            #expect(try #require(results[2]?.counters.version) > (placed.counters[sale.id]?.version ?? 0))

            let expired = try await store.transition(orders[2].id, by: .expire, at: now)
            #expect(expired.order.status == .expired && expired.counters.counters.available == 4)
            let refunded = try await store.transition(orders[2].id, by: .refund, at: now)
            #expect(refunded.order.status == .refunded && refunded.counters.counters.available == 4)
            await #expect(throws: OrderError.orderNotFound) { try await store.transition(.make(), by: .pay, at: now) }

            #expect(try await store.events(of: orders[0].id).map(\.kind) == [.created, .paid])
            #expect(try await store.events(of: orders[1].id).map(\.kind) == [.created, .cancelled])
            #expect(try await store.events(of: orders[2].id).map(\.sequence) == [1, 2, 3])
            // What the per-buyer limit counts: paid and pending orders, not ended ones.
            var held: [Int] = []
            for buyer in ["b1", "b2", "b3"] { held.append(try await store.holdings(of: buyer, in: sale.id)) }
            #expect(held == [1, 0, 0])
            #expect(try await store.order(orders[1].id)?.flag?.reason == .confirmAfterCancel)

            let flagged = try await store.orders(matching: OrderFilter(flaggedOnly: true), after: nil, limit: 10)
            #expect(flagged.map(\.id) == [orders[1].id])
            let paid = try await store.orders(matching: OrderFilter(saleID: sale.id, status: .paid), after: nil, limit: 10)
            #expect(paid.map(\.id) == [orders[0].id])
            let all = try await store.orders(matching: OrderFilter(saleID: sale.id), after: nil, limit: 2)
            #expect(all.map(\.id) == orders.prefix(2).map(\.id))
            let rest = try await store.orders(matching: OrderFilter(saleID: sale.id), after: all.last?.id, limit: 2)
            #expect(rest.map(\.id) == [orders[2].id])
            try await store.flagOrder(orders[0].id, OrderFlag(reason: .confirmFailed, flaggedAt: now))
            #expect(try await store.order(orders[0].id)?.flag == OrderFlag(reason: .confirmFailed, flaggedAt: now))
            await #expect(throws: OrderError.orderNotFound) {
                try await store.flagOrder(.make(), OrderFlag(reason: .confirmFailed, flaggedAt: now))
            }
        }
    }

    @Test("cancelling an attempt: its order is cancelled, or its key is refused from then on", arguments: StoreKind.allCases)
    func attemptCancellation(kind: StoreKind) async throws {
        _ = try await kind.with { open in
            let store = try await open()
            let sale = makeSale(stock: 5)
            try await store.createSale(sale)
            let placed = try #require(try await store.reserve([reservation(sale, key: "placed", buyer: "ana")]).outcomes[0].order)
            let now = millisecondNow()
            guard case .order(let cancelled) = try await store.cancelAttempt(saleID: sale.id, idempotencyKey: "placed", buyer: nil, at: now)
            else {
                Issue.record("the placed attempt was not cancelled")
                return
            }
            #expect(cancelled.order.id == placed.id && cancelled.order.status == .cancelled)
            guard case .recorded(let at) = try await store.cancelAttempt(saleID: sale.id, idempotencyKey: "never", buyer: nil, at: now)
            else {
                Issue.record("the unplaced attempt was not recorded")
                return
            }
            #expect(at == now)
            guard
                case .recorded(let again) = try await store.cancelAttempt(saleID: sale.id, idempotencyKey: "never", buyer: nil, at: now + 5)
            else {
                Issue.record("the repeat was not recorded")
                return
            }
            #expect(again == now)
            #expect(try await store.reserve([reservation(sale, key: "never", buyer: "bob")]).outcomes == [.refused(.attemptCancelled)])
            await #expect(throws: OrderError.saleNotFound) {
                try await store.cancelAttempt(saleID: .make(), idempotencyKey: "x", buyer: nil, at: now)
            }
        }
    }

    @Test(
        "a buyer's cancel by key touches only that buyer's attempts; an operator's touches everyone's; the buyer's limit may be the pass's",
        arguments: StoreKind.allCases)
    func attemptCancellationByBuyer(kind: StoreKind) async throws {
        _ = try await kind.with { open in
            let store = try await open()
            let sale = makeSale(stock: 10)
            try await store.createSale(sale)
            let now = millisecondNow()
            // Ana's order with key "shared": Bob's cancel with that key leaves it alone.
            let anas = try #require(try await store.reserve([reservation(sale, key: "shared", buyer: "ana")]).outcomes[0].order)
            guard case .recorded = try await store.cancelAttempt(saleID: sale.id, idempotencyKey: "shared", buyer: "bob", at: now)
            else {
                Issue.record("bob's cancel touched ana's order")
                return
            }
            #expect(try await store.order(anas.id)?.status == .pendingPayment)
            // Bob cancels his own lost attempt "lost": it refuses Bob's late attempt, not Cid's with the same key.
            guard case .recorded = try await store.cancelAttempt(saleID: sale.id, idempotencyKey: "lost", buyer: "bob", at: now)
            else {
                Issue.record("bob's unplaced attempt was not recorded")
                return
            }
            #expect(try await store.reserve([reservation(sale, key: "lost", buyer: "bob")]).outcomes == [.refused(.attemptCancelled)])
            let cids = try await store.reserve([reservation(sale, key: "lost", buyer: "cid")]).outcomes[0]
            #expect(cids.order?.buyer == "cid", "\(cids)")
            // An operator's cancel refuses any buyer's attempt with the key.
            _ = try await store.cancelAttempt(saleID: sale.id, idempotencyKey: "op", buyer: nil, at: now)
            #expect(try await store.reserve([reservation(sale, key: "op", buyer: "dan")]).outcomes == [.refused(.attemptCancelled)])
            // The request's own limit (a buyer pass's) replaces the sale's limit of 1.
            var request = reservation(sale, key: "eve-1", buyer: "eve", quantity: 3)
            request.request.perBuyerLimit = 3
            #expect(try await store.reserve([request]).outcomes[0].order?.quantity == 3)
            #expect(
                try await store.reserve([reservation(sale, key: "fay-1", buyer: "fay", quantity: 2)]).outcomes
                    == [.refused(.quantityAboveLimit(limit: 1))])
        }
    }

    @Test(
        "payments: success pays once, duplicates and mismatches change nothing, a late success is refunded", arguments: StoreKind.allCases)
    func payments(kind: StoreKind) async throws {
        _ = try await kind.with { open in
            let store = try await open()
            let sale = makeSale(stock: 5)
            try await store.createSale(sale)
            let orders = try await store.reserve((1...2).map { reservation(sale, key: "k\($0)", buyer: "b\($0)") })
                .outcomes.compactMap(\.order)
            let now = millisecondNow()
            let created = PaymentObservation(
                orderID: orders[0].id, payment: OrderPayment(id: "pi_1", status: .created, payURL: "http://psp/pay/pi_1"),
                eventID: "evt_1")
            let success = PaymentObservation(
                orderID: orders[0].id, payment: OrderPayment(id: "pi_1", status: .succeeded, payURL: nil), eventID: "evt_2")
            let results = try await store.recordPayments(
                [
                    created, success, success,
                    PaymentObservation(orderID: orders[0].id, payment: OrderPayment(id: "pi_other", status: .succeeded, payURL: nil)),
                    PaymentObservation(orderID: .make(), payment: OrderPayment(id: "pi_x", status: .created, payURL: nil)),
                ], at: now)
            let paid = try results[1].get()
            #expect(paid.transition?.change == .applied && paid.order.status == .paid)
            #expect(paid.order.payment == OrderPayment(id: "pi_1", status: .succeeded, payURL: "http://psp/pay/pi_1"))
            #expect(try results[2].get().duplicate)
            #expect(throws: PaymentRecordFailure.mismatch(PaymentMismatchError(orderID: orders[0].id, known: "pi_1", observed: "pi_other")))
            {
                try results[3].get()
            }
            #expect(throws: PaymentRecordFailure.orderNotFound) { try results[4].get() }
            #expect(try await store.sale(sale.id)?.stock == StockCounters(total: 5, available: 3, reserved: 1, sold: 1))

            // The provider names the first order's payment for the second: refused, nothing recorded
            // (not a constraint error thrown for the whole batch).
            let taken = try await store.recordPayments(
                [
                    PaymentObservation(
                        orderID: orders[1].id, payment: OrderPayment(id: "pi_1", status: .succeeded, payURL: nil), eventID: "evt_t")
                ],
                at: now)
            #expect(
                throws: PaymentRecordFailure.paymentTaken(PaymentTakenError(orderID: orders[1].id, paymentID: "pi_1", heldBy: orders[0].id))
            ) {
                try taken[0].get()
            }
            #expect(try await store.order(orders[1].id)?.payment == nil)
            #expect(try await store.sale(sale.id)?.stock == StockCounters(total: 5, available: 3, reserved: 1, sold: 1))

            // The second order expires; its payment succeeds afterwards: flagged, refund job, then refunded.
            _ = try await store.transition(orders[1].id, by: .expire, at: now)
            let late = try await store.recordPayment(
                PaymentObservation(
                    orderID: orders[1].id, payment: OrderPayment(id: "pi_2", status: .succeeded, payURL: nil), eventID: "evt_3"),
                at: now)
            #expect(late.refundEnqueued && late.order.status == .expired)
            #expect(late.order.flag?.reason == .confirmAfterCancel)
            let refund = try await store.recordPayment(
                PaymentObservation(
                    orderID: orders[1].id, payment: OrderPayment(id: "pi_2", status: .refunded, payURL: nil), eventID: "evt_4"),
                at: now)
            #expect(refund.order.status == .refunded)
            #expect(try await store.sale(sale.id)?.stock == StockCounters(total: 5, available: 4, reserved: 0, sold: 1))
            #expect(try await store.events(of: orders[1].id).map(\.kind) == [.created, .expired, .refunded])
        }
    }

    @Test("merchant endpoints: each event gets a delivery per endpoint that wants it, told in order", arguments: StoreKind.allCases)
    func webhookDeliveries(kind: StoreKind) async throws {
        _ = try await kind.with { open in
            let store = try await open()
            let now = millisecondNow()
            let all = WebhookEndpoint(
                id: .make(), url: "http://127.0.0.1:1/all", secret: String(repeating: "s", count: 16),
                eventTypes: Set(OrderEvent.Kind.allCases), createdAt: now)
            let paidOnly = WebhookEndpoint(
                id: .make(), url: "http://127.0.0.1:1/paid", secret: String(repeating: "t", count: 16), eventTypes: [.paid], createdAt: now)
            try await store.createWebhookEndpoint(all)
            try await store.createWebhookEndpoint(paidOnly)
            #expect(try await store.webhookEndpoints() == [all, paidOnly].sorted { $0.id < $1.id })
            let sale = makeSale(stock: 5)
            try await store.createSale(sale)
            let order = try #require(try await store.reserve([reservation(sale, key: "k", buyer: "ana")]).outcomes[0].order)
            _ = try await store.transition(order.id, by: .pay, at: now)
            let jobs = try await store.jobs(matching: JobFilter(kind: WebhookJobs.deliver.name), after: nil, limit: 10)
            let deliveries = Set(jobs.compactMap { try? WebhookJobs.deliver.parameters(of: $0) })
            #expect(
                deliveries == [
                    .init(endpointId: all.id, orderId: order.id, sequence: 1),
                    .init(endpointId: all.id, orderId: order.id, sequence: 2),
                    .init(endpointId: paidOnly.id, orderId: order.id, sequence: 2),
                ])
            let second = WebhookJobs.Delivery(endpointId: all.id, orderId: order.id, sequence: 2)
            let before = try #require(try await store.webhookDelivery(second))
            #expect(before.event.kind == .paid && before.endpoint == all && !before.previousDelivered)
            try await store.markDelivered(.init(endpointId: all.id, orderId: order.id, sequence: 1), at: now)
            #expect(try await store.webhookDelivery(second)?.previousDelivered == true)
            #expect(try await store.deleteWebhookEndpoint(paidOnly.id, at: now))
            #expect(try await store.deleteWebhookEndpoint(paidOnly.id, at: now) == false)
            #expect(try await store.webhookDelivery(.init(endpointId: paidOnly.id, orderId: order.id, sequence: 2))?.endpoint == nil)
            #expect(try await store.webhookEndpoints() == [all])
        }
    }

    @Test("jobs: unique keys, claims with leases, finishing, rescue, operator retry, statistics, pruning", arguments: StoreKind.allCases)
    func jobs(kind: StoreKind) async throws {
        _ = try await kind.with { open in
            let store = try await open()
            let now = millisecondNow()
            let enqueued = try await store.enqueue(
                [
                    NewJob(kind: "test.a", payload: "1", uniqueKey: "u1"),
                    NewJob(kind: "test.a", payload: "2", uniqueKey: "u1"),
                    NewJob(kind: "test.b", payload: "3", maxAttempts: 1),
                    NewJob(kind: "test.later", payload: "4", runAt: now.addingTimeInterval(60)),
                ], at: now)
            #expect(enqueued.map(\.duplicate) == [false, true, false, false])
            #expect(enqueued[0].id == enqueued[1].id)
            let claim = try await store.claimJobs(limit: 10, worker: "w1", lease: .seconds(30), at: now)
            #expect(claim.jobs.map(\.payload) == ["1", "3"])
            #expect(claim.jobs.allSatisfy { $0.state == .running && $0.attempt == 1 && $0.leaseUntil == now.addingTimeInterval(30) })
            #expect(claim.nextRunAt == now.addingTimeInterval(60))
            #expect(try await store.claimJobs(limit: 10, worker: "w2", lease: .seconds(30), at: now).jobs.isEmpty)

            let a = claim.jobs[0]
            let b = claim.jobs[1]
            try await store.finishJobs(
                [
                    JobFinish(lease: a.lease(worker: "w1"), completion: .failed(error: "boom", retryAt: now.addingTimeInterval(1))),
                    JobFinish(lease: b.lease(worker: "w1"), completion: .failed(error: "fatal", retryAt: nil)),
                    JobFinish(lease: b.lease(worker: "someone else"), completion: .completed),  // not its lease: ignored
                ], at: now)
            #expect(try await store.job(a.id)?.state == .retryable)
            #expect(try await store.job(a.id)?.lastError == "boom")
            let discarded = try #require(try await store.job(b.id))
            #expect(discarded.state == .discarded && discarded.finalizedAt == now)
            let stats = try await store.jobStatistics(at: now.addingTimeInterval(2))
            #expect(stats.counts["test.a"]?[.retryable] == 1 && stats.counts["test.b"]?[.discarded] == 1)
            #expect(stats.due == 1 && stats.oldestDueRunAt == now.addingTimeInterval(1))

            // The retry is due a second later; its worker dies; the lease runs out; another takes it.
            let retried = try await store.claimJobs(limit: 10, worker: "w2", lease: .seconds(5), at: now.addingTimeInterval(1))
            #expect(retried.jobs.map(\.id) == [a.id] && retried.jobs[0].attempt == 2)
            let rescued = try await store.claimJobs(limit: 10, worker: "w3", lease: .seconds(5), at: now.addingTimeInterval(7))
            #expect(rescued.rescued == 1 && rescued.jobs.map(\.id) == [a.id] && rescued.jobs[0].attempt == 3)
            #expect(rescued.discarded.isEmpty, "attempts were left: retried, not given up")
            try await store.extendLeases(worker: "w3", until: now.addingTimeInterval(100))
            #expect(try await store.job(a.id)?.leaseUntil == now.addingTimeInterval(100))
            try await store.finishJobs(
                [JobFinish(lease: rescued.jobs[0].lease(worker: "w3"), completion: .snoozed(until: now.addingTimeInterval(50)))],
                at: now.addingTimeInterval(8))
            let snoozed = try #require(try await store.job(a.id))
            #expect(snoozed.state == .scheduled && snoozed.attempt == 2)

            let again = try await store.retryJob(b.id, at: now.addingTimeInterval(9))
            #expect(again.state == .available && again.maxAttempts == 2)
            await #expect(throws: JobError.self) { try await store.retryJob(b.id, at: now) }
            await #expect(throws: JobError.jobNotFound) { try await store.retryJob(JobID(999_999), at: now) }
            let last = try await store.claimJobs(limit: 10, worker: "w4", lease: .seconds(5), at: now.addingTimeInterval(10))
            #expect(last.jobs.map(\.id) == [b.id])
            try await store.finishJobs(
                [JobFinish(lease: last.jobs[0].lease(worker: "w4"), completion: .completed)], at: now.addingTimeInterval(10))
            #expect(try await store.jobs(matching: JobFilter(state: .completed), after: nil, limit: 10).map(\.id) == [b.id])
            // The statistics leave completed jobs out (a retention's worth of them after a sale).
            let later = try await store.jobStatistics(at: now.addingTimeInterval(10))
            #expect(later.counts["test.b"] == nil && later.counts["test.a"] == [.scheduled: 1], "\(later.counts)")
            #expect(try await store.pruneJobs(completedBefore: now.addingTimeInterval(11), discardedBefore: now) == 1)
            #expect(try await store.job(b.id) == nil)
        }
    }

    @Test("a job keeps the trace it was enqueued in, enqueued alone or with a reserved order", arguments: StoreKind.allCases)
    func jobTraceParent(kind: StoreKind) async throws {
        _ = try await kind.with { open in
            let store = try await open()
            let now = millisecondNow()
            let traced = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            _ = try await store.enqueue(
                [NewJob(kind: "test.t", payload: "1", traceParent: traced), NewJob(kind: "test.t", payload: "2")], at: now)
            let sale = makeSale(stock: 2)
            try await store.createSale(sale)
            _ = try await store.reserve([
                reservation(sale, key: "k1", buyer: "ana", jobs: [NewJob(kind: "test.t", payload: "3", traceParent: traced)]),
                reservation(sale, key: "k2", buyer: "bob", jobs: [NewJob(kind: "test.t", payload: "4")]),
            ])
            let claimed = try await store.claimJobs(limit: 10, worker: "w1", lease: .seconds(30), at: now.addingTimeInterval(1))
            let traces = Dictionary(uniqueKeysWithValues: claimed.jobs.map { ($0.payload, $0.traceParent ?? "none") })
            #expect(traces == ["1": traced, "2": "none", "3": traced, "4": "none"])
        }
    }

    @Test(
        "a job whose lease runs out on its last attempt is discarded by the next claim, which hands it over for its hook",
        arguments: StoreKind.allCases)
    func rescueOnTheLastAttempt(kind: StoreKind) async throws {
        _ = try await kind.with { open in
            let store = try await open()
            let now = millisecondNow()
            let id = try await store.enqueue([NewJob(kind: "test.once", payload: "p", maxAttempts: 1)], at: now)[0].id
            // Its only attempt's worker dies.
            #expect(try await store.claimJobs(limit: 10, worker: "dead", lease: .seconds(5), at: now).jobs.map(\.id) == [id])
            let early = try await store.claimJobs(limit: 10, worker: "w", lease: .seconds(5), at: now.addingTimeInterval(4))
            #expect(early.rescued == 0 && early.discarded.isEmpty, "the lease still holds")
            let rescue = try await store.claimJobs(limit: 10, worker: "w", lease: .seconds(5), at: now.addingTimeInterval(6))
            #expect(rescue.rescued == 1 && rescue.jobs.isEmpty)
            let given = try #require(rescue.discarded.first)
            #expect(rescue.discarded.count == 1 && given.id == id && given.kind == "test.once" && given.attempt == 1)
            #expect(given.state == .discarded && given.finalizedAt == now.addingTimeInterval(6))
            #expect(given.lastError?.contains("lease ran out") == true, "\(String(describing: given.lastError))")
            #expect(try await store.job(id)?.state == .discarded)
            // Handed over once: the next claim has nothing to give up.
            #expect(try await store.claimJobs(limit: 10, worker: "w", lease: .seconds(5), at: now.addingTimeInterval(7)).discarded.isEmpty)
        }
    }

    @Test(
        "two store instances on one database (two nodes) reserving at once: exactly the stock, no buyer over the limit",
        arguments: StoreKind.allCases)
    func twoNodes(kind: StoreKind) async throws {
        _ = try await kind.with { open in
            let nodes = [try await open(), try await open()]
            let sale = makeSale(stock: 150)
            try await nodes[0].createSale(sale)
            // 40 batches of 25 per node, buyers shared between the nodes: 1,000 buyers for 150 units.
            let outcomes = try await withThrowingTaskGroup(of: [ReservationOutcome].self) { group in
                for node in 0..<2 {
                    for batch in 0..<20 {
                        group.addTask {
                            let reservations = (0..<25).map { i in
                                reservation(sale, key: "n\(node)-\(batch)-\(i)", buyer: "buyer-\((batch * 25 + i) % 1000)")
                            }
                            return try await nodes[node].reserve(reservations).outcomes
                        }
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            let reserved = outcomes.compactMap { if case .reserved(let order) = $0 { order } else { nil } }
            #expect(reserved.count == 150)
            #expect(Set(reserved.map(\.buyer)).count == 150)
            #expect(try await nodes[1].sale(sale.id)?.stock == StockCounters(total: 150, available: 0, reserved: 150, sold: 0))
            let listed = try await nodes[1].orders(matching: OrderFilter(saleID: sale.id), after: nil, limit: 1000)
            #expect(listed.count == 150)
        }
    }

    @Test("two nodes claiming at once take different jobs: 500 jobs, each claimed once", arguments: StoreKind.allCases)
    func claimsAcrossNodes(kind: StoreKind) async throws {
        _ = try await kind.with { open in
            let nodes = [try await open(), try await open()]
            let now = millisecondNow()
            _ = try await nodes[0].enqueue((0..<500).map { NewJob(kind: "test.n", payload: "\($0)") }, at: now)
            let claimed = try await withThrowingTaskGroup(of: [JobID].self) { group in
                for node in 0..<2 {
                    for worker in 0..<4 {
                        group.addTask {
                            var mine: [JobID] = []
                            while true {
                                let claim = try await nodes[node].claimJobs(
                                    limit: 20, worker: "n\(node)w\(worker)", lease: .seconds(30), at: now)
                                if claim.jobs.isEmpty { return mine }
                                mine += claim.jobs.map(\.id)
                            }
                        }
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(claimed.count == 500)
            #expect(Set(claimed).count == 500)
        }
    }
}
