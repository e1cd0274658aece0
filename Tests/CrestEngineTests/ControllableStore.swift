import CrestCore
import CrestStore
import CrestTestSupport
import Foundation
import Testing
import CrestEngine

/// A real SQLite store with two switches for tests: hold reservation batches until released, and
/// fail them (as a full disk or a lost database connection would).
final class ControllableStore: Store {
    private let inner: SQLiteStore
    private let held = Locked<[CheckedContinuation<Void, Never>]?>(nil)
    private let failing = Locked(false)
    private let failingTransitions = Locked<Set<Order.Event>>([])
    /// The size of each batch `reserve` was called with, in order.
    let batchSizes = Locked<[Int]>([])

    struct InjectedFailure: Error {}

    init(directory: URL) throws {
        inner = try SQLiteStore(directory: directory)
    }

    /// From now on, `reserve` waits until `release()`.
    func hold() { held.withLock { $0 = $0 ?? [] } }

    func release() {
        let waiting = held.withLock { waiting -> [CheckedContinuation<Void, Never>] in
            defer { waiting = nil }
            return waiting ?? []
        }
        for continuation in waiting { continuation.resume() }
    }

    func setFailing(_ value: Bool) { failing.withLock { $0 = value } }

    /// From now on, `transition` fails for these events (as a store that lost its connection would).
    func setFailingTransitions(_ events: Set<Order.Event>) { failingTransitions.withLock { $0 = events } }

    func reserve(_ batch: [Reservation]) async throws -> ReservationBatchResult {
        batchSizes.withLock { $0.append(batch.count) }
        await withCheckedContinuation { continuation in
            let wait = held.withLock { waiting -> Bool in
                guard waiting != nil else { return false }
                waiting!.append(continuation)
                return true
            }
            if !wait { continuation.resume() }
        }
        if failing.value { throw InjectedFailure() }
        return try await inner.reserve(batch)
    }

    func createSale(_ sale: Sale) async throws { try await inner.createSale(sale) }
    func sale(_ id: SaleID) async throws -> Sale? { try await inner.sale(id) }
    func sales(after: SaleID?, limit: Int) async throws -> [Sale] { try await inner.sales(after: after, limit: limit) }
    func order(_ id: OrderID) async throws -> Order? { try await inner.order(id) }
    func order(saleID: SaleID, idempotencyKey: String) async throws -> Order? {
        try await inner.order(saleID: saleID, idempotencyKey: idempotencyKey)
    }
    func gateSnapshot(for saleID: SaleID) async throws -> GateSnapshot? {
        if failing.value { throw InjectedFailure() }
        return try await inner.gateSnapshot(for: saleID)
    }
    func transition(_ id: OrderID, by event: Order.Event, at now: Date) async throws -> TransitionResult {
        if failingTransitions.value.contains(event) { throw InjectedFailure() }
        return try await inner.transition(id, by: event, at: now)
    }
    func transitions(_ requests: [TransitionRequest], at now: Date) async throws -> [TransitionResult?] {
        if requests.contains(where: { failingTransitions.value.contains($0.event) }) { throw InjectedFailure() }
        return try await inner.transitions(requests, at: now)
    }
    func cancelAttempt(saleID: SaleID, idempotencyKey: String, at now: Date) async throws -> AttemptCancellationResult {
        try await inner.cancelAttempt(saleID: saleID, idempotencyKey: idempotencyKey, at: now)
    }
    func recordPayments(_ observations: [PaymentObservation], at now: Date) async throws
        -> [Result<PaymentRecord, PaymentRecordFailure>]
    {
        try await inner.recordPayments(observations, at: now)
    }
    func createWebhookEndpoint(_ endpoint: WebhookEndpoint) async throws { try await inner.createWebhookEndpoint(endpoint) }
    func webhookEndpoints() async throws -> [WebhookEndpoint] { try await inner.webhookEndpoints() }
    func deleteWebhookEndpoint(_ id: WebhookEndpointID, at now: Date) async throws -> Bool {
        try await inner.deleteWebhookEndpoint(id, at: now)
    }
    func webhookDelivery(_ delivery: WebhookJobs.Delivery) async throws -> WebhookDeliveryContext? {
        try await inner.webhookDelivery(delivery)
    }
    func markDelivered(_ delivery: WebhookJobs.Delivery, at now: Date) async throws {
        try await inner.markDelivered(delivery, at: now)
    }
    func flagOrder(_ id: OrderID, _ flag: OrderFlag) async throws { try await inner.flagOrder(id, flag) }
    func orders(matching filter: OrderFilter, after: OrderID?, limit: Int) async throws -> [Order] {
        try await inner.orders(matching: filter, after: after, limit: limit)
    }
    func events(of orderID: OrderID) async throws -> [OrderEvent] { try await inner.events(of: orderID) }
    func enqueue(_ jobs: [NewJob], at now: Date) async throws -> [EnqueuedJob] {
        try await inner.enqueue(jobs, at: now)
    }
    func claimJobs(limit: Int, worker: String, lease: Duration, at now: Date) async throws -> JobClaim {
        try await inner.claimJobs(limit: limit, worker: worker, lease: lease, at: now)
    }
    func extendLeases(worker: String, until: Date) async throws { try await inner.extendLeases(worker: worker, until: until) }
    func finishJobs(_ finishes: [JobFinish], at now: Date) async throws { try await inner.finishJobs(finishes, at: now) }
    func job(_ id: JobID) async throws -> Job? { try await inner.job(id) }
    func jobs(matching filter: JobFilter, after: JobID?, limit: Int) async throws -> [Job] {
        try await inner.jobs(matching: filter, after: after, limit: limit)
    }
    func retryJob(_ id: JobID, at now: Date) async throws -> Job { try await inner.retryJob(id, at: now) }
    func jobStatistics(at now: Date) async throws -> JobStatistics { try await inner.jobStatistics(at: now) }
    func pruneJobs(completedBefore: Date, discardedBefore: Date) async throws -> Int {
        try await inner.pruneJobs(completedBefore: completedBefore, discardedBefore: discardedBefore)
    }
    func ping() async throws {
        if failing.value { throw InjectedFailure() }
        try await inner.ping()
    }
    func close() async throws { try await inner.close() }
}

extension EngineFixture {
    /// An engine whose store is a `ControllableStore`, handed to `body` beside the fixture.
    static func withControllableStore<T: Sendable>(
        configuration: EngineConfiguration = .init(),
        _ body: (EngineFixture, ControllableStore) async throws -> T
    ) async throws -> T {
        let store = Locked<ControllableStore?>(nil)
        return try await with(
            configuration: configuration,
            makeStore: { directory in
                let controllable = try ControllableStore(directory: directory)
                store.withLock { $0 = controllable }
                return controllable
            }
        ) { fixture in
            try await body(fixture, try #require(store.value))
        }
    }
}
