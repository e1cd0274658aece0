import CrestCore
import CrestStore
import CrestTestSupport
import Foundation
import Testing

@Suite("Store conformance: reconciliation")
struct ReconciliationConformanceTests {
    static func run(at now: Date) -> ReconciliationRun {
        // Ids of now (not of `now`): ids are made in order, and none of them in the future.
        ReconciliationRun(id: .make(), from: now.addingTimeInterval(-3600), to: now, startedAt: now)
    }

    static func item(_ run: ReconciliationRun, _ sequence: Int, _ kind: DifferenceKind, payment: String, order: OrderID?, healed: Bool)
        -> ReconciliationItem
    {
        ReconciliationItem(
            runID: run.id, sequence: sequence, kind: kind, resolution: healed ? .healed : .reported, paymentID: payment,
            orderID: order, before: "provider: succeeded", after: healed ? "paid" : "", action: healed ? "healed" : "",
            at: millisecondNow())
    }

    static func success(_ order: Order, _ payment: String) -> ReconciliationHeal {
        .observe(PaymentObservation(orderID: order.id, payment: OrderPayment(id: payment, status: .succeeded, payURL: nil)))
    }

    @Test("a run is stored, updated when it ends, and listed newest first", arguments: StoreKind.allCases)
    func runs(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let now = millisecondNow()
            var first = Self.run(at: now)
            let second = Self.run(at: now.addingTimeInterval(1))
            try await store.createReconciliationRun(first)
            try await store.createReconciliationRun(second)
            first.state = .finished
            first.finishedAt = now.addingTimeInterval(2)
            (first.lines, first.matched, first.healed, first.underWay, first.reported) = (10, 6, 2, 1, 1)
            try await store.updateReconciliationRun(first)
            #expect(try await store.reconciliationRun(first.id) == first)
            #expect(try await store.reconciliationRun(.make()) == nil)
            #expect(try await store.reconciliationRuns(after: nil, limit: 10).map(\.id) == [second.id, first.id])
            #expect(try await store.reconciliationRuns(after: second.id, limit: 10).map(\.id) == [first.id])
        }
    }

    @Test("a heal and its record commit together: the observed success pays the order, the item says so", arguments: StoreKind.allCases)
    func healWithRecord(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (sale, orders) = try await TransitionConformanceTests.pendingOrders(1, on: store)
            let run = Self.run(at: millisecondNow())
            try await store.createReconciliationRun(run)
            let item = Self.item(run, 1, .succeededNotRecorded, payment: "pi_1", order: orders[0].id, healed: true)
            let recorded = try await store.recordReconciliationItem(item, heal: Self.success(orders[0], "pi_1"))
            #expect(recorded == item)
            #expect(try await store.order(orders[0].id)?.status == .paid)
            #expect(try await store.sale(sale.id)?.stock.sold == 1)
            #expect(try await store.reconciliationItems(of: run.id, after: nil, limit: 10) == [item])
        }
    }

    @Test(
        "a refund heal is made once while its job is live (heal-under-way); once it ran and the difference is still there, it is made again",
        arguments: StoreKind.allCases)
    func refundHealedOnce(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let now = millisecondNow()
            let runs = (0..<3).map { Self.run(at: now.addingTimeInterval(Double($0))) }
            for run in runs { try await store.createReconciliationRun(run) }
            let refund = ReconciliationHeal.enqueue(ReconciliationJobs.refunding("pi_extra", key: "reconcile-refund-pi_extra"))
            func heal(_ run: ReconciliationRun) async throws -> ReconciliationItem {
                try await store.recordReconciliationItem(
                    Self.item(run, 1, .duplicateCharge, payment: "pi_extra", order: nil, healed: true), heal: refund)
            }
            #expect(try await heal(runs[0]).resolution == .healed)
            let again = try await heal(runs[1])
            #expect(again.resolution == .healUnderWay && again.after.isEmpty)
            var jobs = try await store.jobs(matching: JobFilter(kind: ReconciliationJobs.refund.name), after: nil, limit: 10)
            #expect(jobs.count == 1)
            #expect(try jobs.map { try ReconciliationJobs.refund.parameters(of: $0).paymentId } == ["pi_extra"])
            // The job ran (and the provider lost the refund): the next run heals again.
            let claimed = try await store.claimJobs(limit: 1, worker: "w", lease: .seconds(30), at: now)
            try await store.finishJobs([JobFinish(lease: claimed.jobs[0].lease(worker: "w"), completion: .completed)], at: now)
            #expect(try await heal(runs[2]).resolution == .healed)
            jobs = try await store.jobs(matching: JobFilter(kind: ReconciliationJobs.refund.name), after: nil, limit: 10)
            #expect(jobs.map(\.state).sorted { $0.rawValue < $1.rawValue } == [.available, .completed])
        }
    }

    @Test(
        "an ended order's payment the provider failed is marked failed, only while the order is as the heal found it",
        arguments: StoreKind.allCases)
    func markFailed(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (_, orders) = try await TransitionConformanceTests.pendingOrders(2, on: store)
            let now = millisecondNow()
            for order in orders {
                _ = try await store.transition(order.id, by: .expire, at: now)
                _ = try await store.recordPayment(
                    PaymentObservation(orderID: order.id, payment: OrderPayment(id: "pi_\(order.buyer)", status: .succeeded, payURL: nil)),
                    at: now)
            }
            let run = Self.run(at: now)
            try await store.createReconciliationRun(run)
            let marked = try await store.recordReconciliationItem(
                Self.item(run, 1, .failedNotRecorded, payment: "pi_b1", order: orders[0].id, healed: true),
                heal: .markFailed(orderID: orders[0].id, paymentID: "pi_b1"))
            #expect(marked.resolution == .healed)
            #expect(try await store.order(orders[0].id)?.payment?.status == .failed)
            #expect(try await store.order(orders[0].id)?.status == .expired)
            // Not the order's payment: nothing changes, the item is reported.
            let refused = try await store.recordReconciliationItem(
                Self.item(run, 2, .failedNotRecorded, payment: "pi_other", order: orders[1].id, healed: true),
                heal: .markFailed(orderID: orders[1].id, paymentID: "pi_other"))
            #expect(refused.resolution == .reported && refused.action.hasPrefix("not healed"))
            #expect(try await store.order(orders[1].id)?.payment?.status == .succeeded)
        }
    }

    @Test("an observation the store refuses heals nothing: the item is reported with the reason", arguments: StoreKind.allCases)
    func refusedHeal(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (_, orders) = try await TransitionConformanceTests.pendingOrders(1, on: store)
            _ = try await store.recordPayment(
                PaymentObservation(orderID: orders[0].id, payment: OrderPayment(id: "pi_own", status: .created, payURL: nil)),
                at: millisecondNow())
            let run = Self.run(at: millisecondNow())
            try await store.createReconciliationRun(run)
            let recorded = try await store.recordReconciliationItem(
                Self.item(run, 1, .succeededNotRecorded, payment: "pi_other", order: orders[0].id, healed: true),
                heal: Self.success(orders[0], "pi_other"))
            #expect(recorded.resolution == .reported)
            #expect(recorded.action.hasPrefix("not healed:"), "\(recorded.action)")
            #expect(try await store.order(orders[0].id)?.status == .pendingPayment)
        }
    }

    @Test("a heal whose record cannot be written is undone with it: neither is kept", arguments: StoreKind.allCases)
    func healAndRecordTogether(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let (sale, orders) = try await TransitionConformanceTests.pendingOrders(1, on: store)
            let run = Self.run(at: millisecondNow())
            try await store.createReconciliationRun(run)
            _ = try await store.recordReconciliationItem(
                Self.item(run, 1, .amountDiffers, payment: "pi_1", order: orders[0].id, healed: false), heal: nil)
            // Sequence 1 is taken: the record fails after the heal was made in its transaction.
            await #expect(throws: (any Error).self) {
                try await store.recordReconciliationItem(
                    Self.item(run, 1, .succeededNotRecorded, payment: "pi_1", order: orders[0].id, healed: true),
                    heal: Self.success(orders[0], "pi_1"))
            }
            #expect(try await store.order(orders[0].id)?.status == .pendingPayment)
            #expect(try await store.order(orders[0].id)?.payment == nil)
            #expect(try await store.sale(sale.id)?.stock.sold == 0)
            #expect(try await store.reconciliationItems(of: run.id, after: nil, limit: 10).map(\.kind) == [.amountDiffers])
        }
    }

    @Test("items are read in sequence order, a page after a sequence", arguments: StoreKind.allCases)
    func itemsPaged(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let run = Self.run(at: millisecondNow())
            try await store.createReconciliationRun(run)
            for sequence in 1...5 {
                _ = try await store.recordReconciliationItem(
                    Self.item(run, sequence, .missingFromStatement, payment: "pi_\(sequence)", order: .make(), healed: false), heal: nil)
            }
            #expect(try await store.reconciliationItems(of: run.id, after: nil, limit: 2).map(\.sequence) == [1, 2])
            #expect(try await store.reconciliationItems(of: run.id, after: 2, limit: 10).map(\.sequence) == [3, 4, 5])
            #expect(try await store.reconciliationItems(of: .make(), after: nil, limit: 10).isEmpty)
        }
    }

    @Test(
        "an operator resolves a reported difference once: every run's item about it shows it, the same note again is the same, another is refused",
        arguments: StoreKind.allCases)
    func operatorResolution(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let order = OrderID.make()
            let first = Self.run(at: millisecondNow())
            try await store.createReconciliationRun(first)
            _ = try await store.recordReconciliationItem(
                Self.item(first, 1, .amountDiffers, payment: "pi_a", order: order, healed: false), heal: nil)
            _ = try await store.recordReconciliationItem(
                Self.item(first, 2, .orphanCharge, payment: "pi_b", order: nil, healed: true),
                heal: .enqueue(ReconciliationJobs.refunding("pi_b", key: "k")))
            #expect(try await store.auditRecords(at: Date()).reported.map(\.isOpen) == [true])
            #expect(try await store.openReconciliationDifferences() == 1)

            let at = millisecondNow()
            guard
                case .resolved(let item) = try await store.resolveReconciliationItem(
                    of: first.id, sequence: 1, note: "refunded by hand", at: at)
            else {
                Issue.record("not resolved")
                return
            }
            #expect(item.operatorResolution == OperatorResolution(runID: first.id, sequence: 1, note: "refunded by hand", at: at))
            #expect(!item.isOpen)
            // Sent again (a retry): the same answer, nothing new.
            #expect(
                try await store.resolveReconciliationItem(of: first.id, sequence: 1, note: "refunded by hand", at: Date())
                    == .resolved(item))
            #expect(
                try await store.resolveReconciliationItem(of: first.id, sequence: 1, note: "something else", at: Date())
                    == .resolvedBefore(try #require(item.operatorResolution)))
            #expect(try await store.resolveReconciliationItem(of: first.id, sequence: 2, note: "n", at: Date()) == .notReported(.healed))
            #expect(try await store.resolveReconciliationItem(of: first.id, sequence: 3, note: "n", at: Date()) == .notFound)
            #expect(try await store.resolveReconciliationItem(of: .make(), sequence: 1, note: "n", at: Date()) == .notFound)

            // A later run finds the same difference: it shows the resolution; another payment's is open.
            let second = Self.run(at: millisecondNow())
            try await store.createReconciliationRun(second)
            _ = try await store.recordReconciliationItem(
                Self.item(second, 1, .amountDiffers, payment: "pi_a", order: order, healed: false), heal: nil)
            _ = try await store.recordReconciliationItem(
                Self.item(second, 2, .amountDiffers, payment: "pi_c", order: .make(), healed: false), heal: nil)
            let items = try await store.reconciliationItems(of: second.id, after: nil, limit: 10)
            #expect(items.map(\.operatorResolution) == [item.operatorResolution, nil])
            // The audit sees each difference once, its newest item.
            let reported = try await store.auditRecords(at: Date()).reported
            #expect(reported.map(\.paymentID).sorted() == ["pi_a", "pi_c"])
            #expect(reported.allSatisfy { $0.runID == second.id })
            #expect(reported.filter(\.isOpen).map(\.paymentID) == ["pi_c"])
            #expect(try await store.openReconciliationDifferences() == 1, "pi_a's two items are one difference, resolved")
        }
    }

    @Test("Crest's side of a window: the orders with a payment created in it", arguments: StoreKind.allCases)
    func ordersWithPayment(kind: StoreKind) async throws {
        try await kind.withStore { store in
            let now = millisecondNow()
            let sale = makeSale(stock: 5, startsAt: now.addingTimeInterval(-3 * 3600))
            try await store.createSale(sale)
            let orders = try await store.reserve([
                reservation(sale, key: "old", buyer: "a", at: now.addingTimeInterval(-7200)),
                reservation(sale, key: "in", buyer: "b", at: now.addingTimeInterval(-60)),
                reservation(sale, key: "unpaid", buyer: "c", at: now.addingTimeInterval(-60)),
            ]).outcomes.compactMap(\.order)
            try #require(orders.count == 3)
            for order in [orders[0], orders[1]] {
                _ = try await store.recordPayment(
                    PaymentObservation(orderID: order.id, payment: OrderPayment(id: "pi_\(order.buyer)", status: .created, payURL: nil)),
                    at: now)
            }
            let found = try await store.ordersWithPayment(createdFrom: now.addingTimeInterval(-3600), to: now)
            #expect(found.map(\.id) == [orders[1].id])
        }
    }
}
