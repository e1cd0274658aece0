import CrestCore
import CrestStore
import Foundation

/// A store that hands every call to another one. Tests subclass it and override the calls they
/// want to hold, fail or falsify, so that each test double states only what it changes.
open class ForwardingStore: Store, @unchecked Sendable {
    public let inner: any Store

    public init(_ inner: any Store) { self.inner = inner }

    open func createSale(_ sale: Sale) async throws { try await inner.createSale(sale) }
    open func sale(_ id: SaleID) async throws -> Sale? { try await inner.sale(id) }
    open func createRiskRule(_ rule: RiskRule) async throws { try await inner.createRiskRule(rule) }
    open func riskRules() async throws -> [RiskRule] { try await inner.riskRules() }
    open func deleteRiskRule(_ id: RiskRuleID, at now: Date) async throws -> Bool {
        try await inner.deleteRiskRule(id, at: now)
    }
    open func auditRecords(at now: Date) async throws -> AuditRecords { try await inner.auditRecords(at: now) }
    open func ordersWithPayment(createdFrom from: Date, to: Date) async throws -> [Order] {
        try await inner.ordersWithPayment(createdFrom: from, to: to)
    }
    open func createReconciliationRun(_ run: ReconciliationRun) async throws { try await inner.createReconciliationRun(run) }
    open func updateReconciliationRun(_ run: ReconciliationRun) async throws { try await inner.updateReconciliationRun(run) }
    open func reconciliationRun(_ id: ReconciliationRunID) async throws -> ReconciliationRun? {
        try await inner.reconciliationRun(id)
    }
    open func reconciliationRuns(after: ReconciliationRunID?, limit: Int) async throws -> [ReconciliationRun] {
        try await inner.reconciliationRuns(after: after, limit: limit)
    }
    open func reconciliationItems(of run: ReconciliationRunID, after: Int?, limit: Int) async throws -> [ReconciliationItem] {
        try await inner.reconciliationItems(of: run, after: after, limit: limit)
    }
    open func openReconciliationDifferences() async throws -> Int { try await inner.openReconciliationDifferences() }
    open func resolveReconciliationItem(
        of run: ReconciliationRunID, sequence: Int, note: String, at now: Date
    ) async throws -> OperatorResolutionOutcome {
        try await inner.resolveReconciliationItem(of: run, sequence: sequence, note: note, at: now)
    }
    open func recordReconciliationItems(_ records: [ReconciliationRecord]) async throws -> [ReconciliationItem] {
        try await inner.recordReconciliationItems(records)
    }
    open func updateSaleLimits(_ id: SaleID, to limits: SaleLimits) async throws -> Sale? {
        try await inner.updateSaleLimits(id, to: limits)
    }
    open func counters(of saleID: SaleID) async throws -> CounterSnapshot? { try await inner.counters(of: saleID) }
    open func sales(after: SaleID?, limit: Int) async throws -> [Sale] { try await inner.sales(after: after, limit: limit) }
    open func order(_ id: OrderID) async throws -> Order? { try await inner.order(id) }
    open func orders(ids: [OrderID]) async throws -> [OrderID: Order] { try await inner.orders(ids: ids) }
    open func order(saleID: SaleID, idempotencyKey: String) async throws -> Order? {
        try await inner.order(saleID: saleID, idempotencyKey: idempotencyKey)
    }
    open func gateSnapshot(for saleID: SaleID) async throws -> GateSnapshot? { try await inner.gateSnapshot(for: saleID) }
    open func holdings(of buyer: String, in saleID: SaleID) async throws -> Int {
        try await inner.holdings(of: buyer, in: saleID)
    }
    open func reserve(_ batch: [Reservation]) async throws -> ReservationBatchResult { try await inner.reserve(batch) }
    open func transition(_ id: OrderID, by event: Order.Event, at now: Date) async throws -> TransitionResult {
        try await inner.transition(id, by: event, at: now)
    }
    open func transitions(_ requests: [TransitionRequest], at now: Date) async throws -> [TransitionResult?] {
        try await inner.transitions(requests, at: now)
    }
    open func cancelAttempt(saleID: SaleID, idempotencyKey: String, buyer: String?, at now: Date) async throws
        -> AttemptCancellationResult
    {
        try await inner.cancelAttempt(saleID: saleID, idempotencyKey: idempotencyKey, buyer: buyer, at: now)
    }
    open func recordPayments(_ observations: [PaymentObservation], at now: Date) async throws
        -> [Result<PaymentRecord, PaymentRecordFailure>]
    {
        try await inner.recordPayments(observations, at: now)
    }
    open func createWebhookEndpoint(_ endpoint: WebhookEndpoint) async throws {
        try await inner.createWebhookEndpoint(endpoint)
    }
    open func webhookEndpoints() async throws -> [WebhookEndpoint] { try await inner.webhookEndpoints() }
    open func deleteWebhookEndpoint(_ id: WebhookEndpointID, at now: Date) async throws -> Bool {
        try await inner.deleteWebhookEndpoint(id, at: now)
    }
    open func webhookDelivery(_ delivery: WebhookJobs.Delivery) async throws -> WebhookDeliveryContext? {
        try await inner.webhookDelivery(delivery)
    }
    open func markDelivered(_ delivery: WebhookJobs.Delivery, at now: Date) async throws {
        try await inner.markDelivered(delivery, at: now)
    }
    open func flagOrder(_ id: OrderID, _ flag: OrderFlag) async throws { try await inner.flagOrder(id, flag) }
    open func orders(matching filter: OrderFilter, after: OrderID?, limit: Int) async throws -> [Order] {
        try await inner.orders(matching: filter, after: after, limit: limit)
    }
    open func events(of orderID: OrderID) async throws -> [OrderEvent] { try await inner.events(of: orderID) }
    open func eventFeed(after: Int64, limit: Int) async throws -> EventFeedPage {
        try await inner.eventFeed(after: after, limit: limit)
    }
    open func enqueue(_ jobs: [NewJob], at now: Date) async throws -> [EnqueuedJob] {
        try await inner.enqueue(jobs, at: now)
    }
    open func claimJobs(limit: Int, worker: String, lease: Duration, at now: Date) async throws -> JobClaim {
        try await inner.claimJobs(limit: limit, worker: worker, lease: lease, at: now)
    }
    open func extendLeases(worker: String, until: Date) async throws {
        try await inner.extendLeases(worker: worker, until: until)
    }
    open func finishJobs(_ finishes: [JobFinish], at now: Date) async throws { try await inner.finishJobs(finishes, at: now) }
    open func job(_ id: JobID) async throws -> Job? { try await inner.job(id) }
    open func jobs(matching filter: JobFilter, after: JobID?, limit: Int) async throws -> [Job] {
        try await inner.jobs(matching: filter, after: after, limit: limit)
    }
    open func retryJob(_ id: JobID, at now: Date) async throws -> Job { try await inner.retryJob(id, at: now) }
    open func jobStatistics(at now: Date) async throws -> JobStatistics { try await inner.jobStatistics(at: now) }
    open func pruneJobs(completedBefore: Date, discardedBefore: Date) async throws -> Int {
        try await inner.pruneJobs(completedBefore: completedBefore, discardedBefore: discardedBefore)
    }
    open func ping() async throws { try await inner.ping() }
    open var connectionWaiters: Int { inner.connectionWaiters }
    open func deliveries(of orderID: OrderID) async throws -> [EventDelivery] { try await inner.deliveries(of: orderID) }
    open func changes() -> AsyncStream<StoreChange> { inner.changes() }
    open var isShared: Bool { inner.isShared }
    open var prefersCommitterThread: Bool { inner.prefersCommitterThread }
    open func close() async throws { try await inner.close() }
}
