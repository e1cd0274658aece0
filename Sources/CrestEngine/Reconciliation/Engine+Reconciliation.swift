import CrestCore
import CrestPayments
import CrestStore
import Foundation
import Logging
import Metrics

/// No reconciliation run has this id.
package struct ReconciliationRunNotFound: DomainError, Hashable {
    package init() {}
}

/// The reconciliation has no item with this sequence.
package struct ReconciliationItemNotFound: DomainError, Hashable {
    package init() {}
}

/// An operator's resolution refused: the item was healed (nothing to resolve), or its difference
/// was resolved before with another note.
package struct ReconciliationItemNotResolvable: DomainError, Hashable {
    package enum Reason: Sendable, Hashable {
        case healed(Resolution)
        case resolvedBefore(OperatorResolution)
    }

    package var reason: Reason
}

/// Reconciliation needs a payment provider, and this Crest has none (`--provider-url`).
package struct NoPaymentProvider: DomainError, Hashable {
    package init() {}
}

/// Compares the provider's statement of a window with Crest's books: each difference healed when
/// it is safe (through the store, with its audit record in the heal's transaction), reported when not.
struct Reconciler: Sendable {
    /// How far past a window's end the statement and the orders are read: a payment is created a
    /// moment after its order, so an order near the end of the window has its line just after it.
    static let margin: TimeInterval = 900

    let store: any Store
    let provider: any PaymentProvider
    let logger: Logger
    let clock: @Sendable () -> Date

    /// Runs a reconciliation of the payments created in `from..<to`; returns it as it ended
    /// (`finished`, or `failed` with the reason). Throws only when the run cannot be recorded.
    func reconcile(from: Date, to: Date) async throws -> ReconciliationRun {
        let started = ReconciliationRun(id: .make(now: clock()), from: from, to: to, startedAt: clock())
        try await store.createReconciliationRun(started)
        var run = started
        do {
            try await compare(&run)
            run.state = .finished
        } catch {
            run.state = .failed
            run.error = "\(error)"
            logger.error("reconciliation failed", metadata: ["run": "\(run.id)", "error": "\(error)"])
        }
        run.finishedAt = clock()
        try await store.updateReconciliationRun(run)
        Counter(label: "crest_reconciliation_runs_total", dimensions: [("state", run.state.rawValue)]).increment()
        logger.notice(
            "reconciliation ended",
            metadata: [
                "run": "\(run.id)", "state": "\(run.state.rawValue)", "lines": "\(run.lines)", "healed": "\(run.healed)",
                "reported": "\(run.reported)",
            ])
        return run
    }

    private func compare(_ run: inout ReconciliationRun) async throws {
        let clock = ContinuousClock()
        let began = clock.now
        let lines = try await provider.statement(from: run.from, to: run.to.addingTimeInterval(Self.margin))
        let statementRead = clock.now
        let orders = try await store.ordersWithPayment(
            createdFrom: run.from.addingTimeInterval(-Self.margin), to: run.to.addingTimeInterval(Self.margin))
        logger.info(
            "reconciliation read both books",
            metadata: [
                "run": "\(run.id)", "statement_lines": "\(lines.count)", "statement_seconds": "\((statementRead - began).seconds)",
                "orders": "\(orders.count)", "orders_seconds": "\((clock.now - statementRead).seconds)",
            ])
        var byPayment: [String: Order] = [:]
        var byID: [OrderID: Order] = [:]
        for order in orders {
            byID[order.id] = order
            if let payment = order.payment { byPayment[payment.id] = order }
        }
        let (from, to) = (run.from, run.to)
        func inWindow(_ date: Date) -> Bool { date >= from && date < to }

        var batch = Batch(run: run)
        // A run that fails part-way still records what it wrote.
        defer { run = batch.run }
        var onStatement = Set<String>()
        for line in lines where line.kind == .charge {
            onStatement.insert(line.paymentID)
            var holder = byPayment[line.paymentID]
            var referenced: Order?
            if holder == nil, let id = OrderID(line.reference) {
                // Most are in the window's orders already read (a second charge for one of them).
                if let known = byID[id] { referenced = known } else { referenced = try await store.order(id) }
                if let order = referenced, order.payment?.id == line.paymentID { holder = order }
            }
            // A line belongs to the window of its order's creation (of its own, with no order).
            guard inWindow((holder ?? referenced)?.createdAt ?? line.createdAt) else { continue }
            batch.run.lines += 1
            let differences = ReconciliationRules.differences(of: line, holder: holder, referenced: referenced)
            if differences.isEmpty { batch.run.matched += 1 }
            for difference in differences { try await batch.add(difference, reconciler: self) }
        }
        for order in orders where inWindow(order.createdAt) {
            guard let payment = order.payment, payment.status == .succeeded || payment.status == .refunded,
                !onStatement.contains(payment.id)
            else { continue }
            try await batch.add(ReconciliationRules.missing(order), reconciler: self)
        }
        try await batch.flush(reconciler: self)
    }

    /// The differences found and not yet written: written (with their heals) a few hundred per
    /// transaction — a run with thousands of differences is not thousands of commits.
    struct Batch {
        static let size = 256
        var run: ReconciliationRun
        var sequence = 0
        var pending: [ReconciliationRecord] = []

        mutating func add(_ difference: Difference, reconciler: Reconciler) async throws {
            sequence += 1
            let item = ReconciliationItem(
                runID: run.id, sequence: sequence, kind: difference.kind,
                resolution: difference.heal == nil ? .reported : .healed, paymentID: difference.paymentID,
                orderID: difference.orderID, before: difference.before, after: difference.heal?.after ?? "",
                action: difference.heal?.action ?? "", at: reconciler.clock())
            pending.append(ReconciliationRecord(item: item, heal: difference.heal?.change))
            if pending.count >= Self.size { try await flush(reconciler: reconciler) }
        }

        mutating func flush(reconciler: Reconciler) async throws {
            guard !pending.isEmpty else { return }
            let recorded = try await reconciler.store.recordReconciliationItems(pending)
            pending.removeAll(keepingCapacity: true)
            for item in recorded {
                switch item.resolution {
                case .healed: run.healed += 1
                case .healUnderWay: run.underWay += 1
                case .reported: run.reported += 1
                }
                Counter(
                    label: "crest_reconciliation_differences_total",
                    dimensions: [("kind", item.kind.rawValue), ("resolution", item.resolution.rawValue)]
                ).increment()
                if item.resolution != .healUnderWay {
                    reconciler.logger.notice(
                        "reconciliation difference",
                        metadata: [
                            "run": "\(run.id)", "kind": "\(item.kind.rawValue)", "resolution": "\(item.resolution.rawValue)",
                            "payment": "\(item.paymentID)", "order": "\(item.orderID.map { "\($0)" } ?? "")",
                        ])
                }
            }
        }
    }

    /// The scheduled reconciliation (`crest serve --reconcile-every-minutes`): one job, live on one
    /// node at a time (its unique key), that reconciles the last two intervals and snoozes for one.
    /// Overlapping windows leave no gap; a heal is made once whatever the overlap.
    func registerSchedule(in handlers: inout JobHandlers, every configured: Duration?) {
        handlers.register(ReconciliationJobs.schedule, timeout: .seconds(900)) { _, _ in
            // A node started without the schedule ends it (every node should be given the same).
            guard let every = configured else { return .completed }
            let now = clock()
            do {
                _ = try await reconcile(from: now.addingTimeInterval(-2 * every.seconds), to: now)
            } catch {
                logger.error("scheduled reconciliation not recorded", metadata: ["error": "\(error)"])
            }
            return .snooze(every)
        }
    }
}

extension Engine {
    var reconciler: Reconciler? {
        provider.map { Reconciler(store: store, provider: $0, logger: logger, clock: clock) }
    }

    /// Compares the provider's statement of the payments created in `from..<to` with Crest's books
    /// (`Reconciler`). Returns the run as it ended (`finished` or `failed`).
    package func reconcile(from: Date, to: Date) async throws -> ReconciliationRun {
        guard let reconciler else { throw NoPaymentProvider() }
        guard from < to else { throw ValidationError(issues: [.init(field: "to", message: "must be after from")]) }
        return try await withStore("reconcile") { try await reconciler.reconcile(from: from, to: to) }
    }

    /// Puts the scheduled reconciliation in the job queue, unless it is there already (any node's).
    package func scheduleReconciliation() async throws {
        guard let every = reconcileEvery, provider != nil else { return }
        _ = try await withStore("schedule reconciliation") {
            try await store.enqueue([ReconciliationJobs.scheduled(every: every, at: clock())], at: clock())
        }
    }

    package func reconciliationRun(_ id: ReconciliationRunID) async throws -> ReconciliationRun {
        guard let run = try await withStore("read a reconciliation", { try await store.reconciliationRun(id) }) else {
            throw ReconciliationRunNotFound()
        }
        return run
    }

    package func reconciliationRuns(after: ReconciliationRunID?, limit: Int) async throws -> [ReconciliationRun] {
        try await withStore("list reconciliations") { try await store.reconciliationRuns(after: after, limit: limit) }
    }

    /// Records an operator's resolution of a reported difference (see `Store.resolveReconciliationItem`);
    /// returns the item with it. The same resolution given twice is answered the same.
    package func resolveReconciliationItem(
        of id: ReconciliationRunID, sequence: Int, note: String
    ) async throws -> ReconciliationItem {
        let note = note.trimmingCharacters(in: .whitespacesAndNewlines)
        if note.isEmpty || note.count > OperatorResolution.longestNote {
            throw ValidationError(issues: [
                .init(field: "note", message: "says what was done about the difference, 1 to \(OperatorResolution.longestNote) characters")
            ])
        }
        let outcome = try await withStore("resolve a reconciliation difference") {
            try await store.resolveReconciliationItem(of: id, sequence: sequence, note: note, at: clock())
        }
        switch outcome {
        case .resolved(let item):
            logger.notice(
                "reconciliation difference resolved by an operator",
                metadata: ["run": "\(id)", "item": "\(sequence)", "kind": "\(item.kind.rawValue)", "payment": "\(item.paymentID)"])
            return item
        case .resolvedBefore(let given):
            throw ReconciliationItemNotResolvable(reason: .resolvedBefore(given))
        case .notReported(let resolution):
            throw ReconciliationItemNotResolvable(reason: .healed(resolution))
        case .notFound:
            throw ReconciliationItemNotFound()
        }
    }

    /// Reported differences no operator resolved yet (`Store.openReconciliationDifferences`).
    package func openReconciliationDifferences() async throws -> Int {
        try await withStore("count open reconciliation differences") { try await store.openReconciliationDifferences() }
    }

    package func reconciliationItems(of id: ReconciliationRunID, after: Int?, limit: Int) async throws -> [ReconciliationItem] {
        try await withStore("read a reconciliation's items") { try await store.reconciliationItems(of: id, after: after, limit: limit) }
    }
}
