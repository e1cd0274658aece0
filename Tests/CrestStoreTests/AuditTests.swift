import CrestCore
import CrestStore
import CrestTestSupport
import Foundation
import GRDB
import Logging
import Testing

/// `crest audit`'s checks on both stores: clean data passes; a violation of each promise, planted
/// by writing the tables directly (as a bug or a hand edit would), is found — by its check alone.
@Suite("The audit of a store's data")
struct AuditTests {
    /// A store with a little of everything, all promises kept: an endpoint for every event, a
    /// pending order (A), a paid one with its payment (B), an expired one (C), a reconciliation
    /// that reported a difference about B (resolved by an operator) and healed an orphan charge
    /// (its refund job live).
    struct Scene {
        let store: any Store
        let sale: Sale
        let pending: Order
        let paid: Order
        let expired: Order
        /// Runs SQL on the store's tables behind its back.
        let execute: @Sendable (String) async throws -> Void
    }

    static func withScene(_ kind: StoreKind, _ body: (Scene) async throws -> Void) async throws {
        switch kind {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appending(path: "crest-audit-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: directory) }
            let store = try SQLiteStore(directory: directory)
            let path = directory.appending(path: "crest.sqlite").path
            try await body(
                try await scene(store) { sql in
                    // Foreign keys off, as PostgreSQL's orders and events have none.
                    var configuration = Configuration()
                    configuration.foreignKeysEnabled = false
                    let queue = try DatabaseQueue(path: path, configuration: configuration)
                    try await queue.write { db in
                        try db.execute(sql: "PRAGMA ignore_check_constraints = ON")
                        try db.execute(sql: sql)
                    }
                    try queue.close()
                })
            try await store.close()
        case .postgres:
            guard let cluster = try await PostgresCluster.shared() else { return }
            let url = try await cluster.createDatabase()
            let store = try await PostgresStore.connect(
                url: url, logger: .init(label: "crest.test.audit"), leaseTimeout: .seconds(30), answerTimeout: .seconds(600))
            try await body(
                try await scene(store) { sql in
                    // The tables' CHECKs would refuse some plants: dropped for the test's database.
                    let dropChecks = """
                        DO $$ DECLARE c text; BEGIN
                        FOR c IN SELECT conname FROM pg_constraint WHERE conrelid = 'sales'::regclass AND contype = 'c' LOOP
                        EXECUTE 'ALTER TABLE sales DROP CONSTRAINT ' || quote_ident(c); END LOOP; END $$;
                        """
                    _ = try await cluster.psql(url, dropChecks + sql)
                })
            try await store.close()
        }
    }

    static func scene(_ store: any Store, execute: @escaping @Sendable (String) async throws -> Void) async throws -> Scene {
        let now = millisecondNow()
        try await store.createWebhookEndpoint(
            WebhookEndpoint(
                id: .make(), url: "http://127.0.0.1:1/hook", secret: String(repeating: "s", count: 16),
                eventTypes: Set(OrderEvent.Kind.allCases), createdAt: now.addingTimeInterval(-1)))
        let sale = makeSale(stock: 10)
        try await store.createSale(sale)
        let orders = try await store.reserve((1...3).map { reservation(sale, key: "k\($0)", buyer: "b\($0)") }).outcomes
            .compactMap(\.order)
        _ = try await store.recordPayment(
            PaymentObservation(orderID: orders[1].id, payment: OrderPayment(id: "pi_b", status: .succeeded, payURL: nil), eventID: "e1"),
            at: now)
        _ = try await store.transition(orders[2].id, by: .expire, at: now)
        let run = ReconciliationRun(id: .make(), from: now.addingTimeInterval(-3600), to: now, startedAt: now)
        try await store.createReconciliationRun(run)
        _ = try await store.recordReconciliationItems([
            ReconciliationRecord(
                item: ReconciliationItem(
                    runID: run.id, sequence: 1, kind: .amountDiffers, resolution: .reported, paymentID: "pi_b",
                    orderID: orders[1].id, before: "provider: 1001 EUR; Crest: 1000 EUR", at: now),
                heal: nil),
            ReconciliationRecord(
                item: ReconciliationItem(
                    runID: run.id, sequence: 2, kind: .orphanCharge, resolution: .healed, paymentID: "pi_orphan", orderID: nil,
                    before: "provider: succeeded, no order", after: "refund under way", action: "refund job enqueued", at: now),
                heal: .enqueue(ReconciliationJobs.refunding("pi_orphan", key: "orphan"))),
        ])
        _ = try await store.resolveReconciliationItem(of: run.id, sequence: 1, note: "provider corrected it", at: now)
        return Scene(
            store: store, sale: sale, pending: orders[0], paid: try #require(try await store.order(orders[1].id)),
            expired: try #require(try await store.order(orders[2].id)), execute: execute)
    }

    static func audit(_ scene: Scene) async throws -> AuditReport {
        StoreAudit.check(try await scene.store.auditRecords(at: Date()))
    }

    @Test("a store whose promises all hold passes every check, each having looked at something", arguments: StoreKind.allCases)
    func cleanPasses(kind: StoreKind) async throws {
        try await Self.withScene(kind) { scene in
            let report = try await Self.audit(scene)
            #expect(report.passed, "\(report.findings)")
            #expect(report.findings.isEmpty)
            let looked = Dictionary(uniqueKeysWithValues: report.checks.map { ($0.check, $0.checked) })
            #expect(looked[.stockConserved] == 1 && looked[.countersMatchOrders] == 1)
            #expect(looked[.pendingOrderWillMove] == 1 && looked[.paidOrderHasPayment] == 1 && looked[.paymentHasOrder] == 1)
            #expect(looked[.everyChangeTold] == 3)
            #expect(looked[.referencesHold] == 8, "3 orders, 5 events")
            #expect(looked[.everyEventDelivered] == 5, "3 created, 1 paid, 1 expired")
            #expect(looked[.differencesResolved] == 2, "one reported difference, one heal's refund")
        }
    }

    /// One violation of `check`, written straight into the tables.
    static func plant(_ check: AuditCheck, in scene: Scene) -> String {
        let (sale, a, b, c) = (scene.sale.id, scene.pending.id, scene.paid.id, scene.expired.id)
        switch check {
        case .stockConserved:
            return "UPDATE sales SET available = available + 1 WHERE id = '\(sale)'"
        case .countersMatchOrders:
            return "UPDATE sales SET available = available - 1, reserved = reserved + 1 WHERE id = '\(sale)'"
        case .pendingOrderWillMove:
            return "UPDATE jobs SET state = 'discarded', finalized_at = 1 WHERE kind = 'order.expire-batch' AND payload LIKE '%\(a)%'"
        case .paidOrderHasPayment:
            return "UPDATE orders SET payment_status = 'created' WHERE id = '\(b)'"
        case .paymentHasOrder:
            return "UPDATE orders SET payment_id = 'pi_c', payment_status = 'succeeded' WHERE id = '\(c)'"
        case .everyChangeTold:
            return "DELETE FROM order_events WHERE order_id = '\(c)' AND sequence = 2"
        case .referencesHold:
            // A cancelled order (its events told) of a sale not stored, and an event of an order
            // not stored; all before the endpoint was added, so no delivery is owed.
            let (order, lost) = (OrderID.make(), OrderID.make())
            return """
                INSERT INTO orders (
                    id, sale_id, buyer, quantity, amount, currency, status, idempotency_key, created_at, expires_at, updated_at)
                VALUES ('\(order)', '\(SaleID.make())', 'b9', 1, 1000, 'EUR', 'cancelled', 'k9', 1, 2, 1);
                INSERT INTO order_events (order_id, sequence, id, sale_id, type, occurred_at) VALUES
                    ('\(order)', 1, '\(EventID.make())', '\(sale)', 'order.created', 1),
                    ('\(order)', 2, '\(EventID.make())', '\(sale)', 'order.cancelled', 1),
                    ('\(lost)', 1, '\(EventID.make())', '\(sale)', 'order.created', 1);
                """
        case .everyEventDelivered:
            return "UPDATE jobs SET state = 'discarded', finalized_at = 1 WHERE kind = 'webhook.deliver' AND payload LIKE '%\(b)%'"
        case .noLeaseRunOut:
            return """
                UPDATE jobs SET state = 'running', attempt = 1, lease_until = 1000, leased_by = 'dead'
                WHERE kind = 'webhook.deliver' AND payload LIKE '%\(a)%'
                """
        case .differencesResolved:
            return "DELETE FROM reconciliation_resolutions"
        }
    }

    @Test(
        "a violation of each promise, planted in the tables, is found by its check and by no other", arguments: StoreKind.allCases,
        AuditCheck.allCases)
    func violationFound(kind: StoreKind, check: AuditCheck) async throws {
        try await Self.withScene(kind) { scene in
            try await scene.execute(Self.plant(check, in: scene))
            let report = try await Self.audit(scene)
            #expect(!report.passed)
            #expect(report.checks.filter { !$0.passed }.map(\.check) == [check], "\(report.findings)")
            #expect(report.findings.first?.check == check)
        }
    }

    @Test("an order of a sale not stored and an event of an order not stored are each found", arguments: StoreKind.allCases)
    func referencesFound(kind: StoreKind) async throws {
        try await Self.withScene(kind) { scene in
            try await scene.execute(Self.plant(.referencesHold, in: scene))
            let report = try await Self.audit(scene)
            #expect(report.checks.first { $0.check == .referencesHold }?.violations == 2)
            #expect(report.findings.map(\.detail).contains { $0.hasSuffix("which is not stored") })
            #expect(report.findings.map(\.detail).contains { $0.hasSuffix("of an order that is not stored") })
        }
    }

    @Test("a heal's refund given up is a difference left unresolved", arguments: StoreKind.allCases)
    func refundGivenUp(kind: StoreKind) async throws {
        try await Self.withScene(kind) { scene in
            try await scene.execute("UPDATE jobs SET state = 'discarded', finalized_at = 1 WHERE kind = 'reconcile.refund'")
            let report = try await Self.audit(scene)
            #expect(report.checks.filter { !$0.passed }.map(\.check) == [.differencesResolved])
            #expect(report.findings.first?.subject == "payment pi_orphan")
        }
    }
}
