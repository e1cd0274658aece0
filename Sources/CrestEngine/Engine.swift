import AsyncHTTPClient
import CrestConcurrency
import CrestCore
import CrestPayments
import CrestStore
import Foundation
import Logging
import ServiceLifecycle

/// Crest's order path: sales, stock gates, the reservation batcher and order changes, over one
/// `Store`. The HTTP layer calls it; it knows nothing of HTTP.
///
/// Run `batcherService` and `jobRunnerService` under the service group (before the HTTP server, so
/// that they shut down after the server stopped sending them work).
///
/// ```swift
/// let engine = Engine(store: try SQLiteStore(directory: dataDirectory), logger: logger)
/// let placed = try await engine.placeOrder(OrderRequest(saleID: id, idempotencyKey: key, buyer: "b1", quantity: 1))
/// ```
package final class Engine: Sendable {
    package let store: any Store
    let batcher: GroupCommitter<StockGate.Ticket, ReservationOutcome>
    /// Merges the order changes of concurrent jobs (expiries, confirmations) into one transaction.
    let transitioner: GroupCommitter<TransitionRequest, TransitionResult?>

    /// Merges the payment observations of concurrent webhooks and jobs into one transaction.
    let paymentRecorder: GroupCommitter<PaymentObservation, Result<PaymentRecord, PaymentRecordFailure>>

    /// Reads waiting for an order's next change; the two committers above tell it what they changed.
    let orderWatch = OrderWatch()

    /// The reservation, transition and payment batchers, to run under the service group.
    package var batcherService: any Service { ServiceSet(services: [batcher, transitioner, paymentRecorder]) }
    let gates: StockGates
    let jobs: JobRunner
    let lifecycle: OrderLifecycle

    /// The job runner (order expiry, payment confirmation), the follower of other nodes' changes
    /// (jobs they enqueued, stock they gave back) and the sweeper of idle stock gates, to run under
    /// the service group.
    package var jobRunnerService: any Service {
        ServiceSet(services: [
            jobs, StoreChangeFollower(store: store, gates: gates, jobs: jobs, logger: logger),
            GateSweeper(gates: gates, idleTimeout: gateIdleTimeout, logger: logger, clock: crestClock),
        ])
    }
    let gateIdleTimeout: Duration
    /// Where an order attempt runs once in the engine (embedded store): a thread of its own, so
    /// that its resumptions — a place on the write path, its batch committed — do not queue in the
    /// task pool behind a crowd's new requests. `nil`: the caller's executor (PostgreSQL).
    let placementThread: EventLoopTaskExecutor?
    /// One for the process, never stopped (as NIO's singleton event loops): the engines of one
    /// process share it, and no attempt can find it gone.
    private static let sharedPlacementThread = EventLoopTaskExecutor.ownThread()
    /// The adaptive limit of order attempts on the write path, when configured.
    package let writePath: WritePathLimit?
    let saleLimits = SaleLimitsCache()
    let metrics = EngineMetrics()
    let provider: (any PaymentProvider)?
    let reconcileEvery: Duration?
    let logger: Logger
    let clock: @Sendable () -> Date
    /// The clock itself, for the services that wait on it.
    let crestClock: any CrestClock

    /// `provider`: the payment provider (best wrapped in a `GuardedProvider`). Without one, orders
    /// get no payment and expire unless a payment is recorded otherwise. `clock` is the time of
    /// everything the engine decides and waits for (an `AdjustableClock` in tests).
    package init(
        store: any Store, configuration: EngineConfiguration = .init(), logger: Logger,
        provider: (any PaymentProvider)? = nil, clock crestClock: any CrestClock = SystemClock()
    ) {
        self.store = store
        self.gateIdleTimeout = configuration.gateIdleTimeout
        self.placementThread = store.prefersCommitterThread ? Self.sharedPlacementThread : nil
        self.writePath = configuration.writePath.map { WritePathLimit($0, clock: crestClock) }
        self.provider = provider
        self.reconcileEvery = configuration.reconcileEvery
        self.logger = logger
        let clock: @Sendable () -> Date = { crestClock.now().wholeMilliseconds }
        self.clock = clock
        self.crestClock = crestClock
        let metrics = self.metrics
        let gates = StockGates(store: store, refusalMemory: configuration.refusalMemoryPerSale, clock: clock) { gate in
            metrics.publish(gate.counters, of: gate.sale.id)
        }
        self.gates = gates
        // The committers of the critical routes' writes (cancel, confirm, the provider's payments)
        // loop on threads of their own as the order batcher does, so that a crowd queued in the
        // task pool does not hold a payment's record after its commit returned.
        let ownThread = store.prefersCommitterThread
        let orderWatch = orderWatch
        let transitioner = GroupCommitter<TransitionRequest, TransitionResult?>(
            window: .zero, maxBatchSize: configuration.maxBatchSize, ownThread: ownThread, logger: logger
        ) { requests in
            let now = clock()
            let results = try await store.transitions(requests, at: now)
            for case let result? in results where result.change == .applied { metrics.recordChange(of: result.order, at: now) }
            orderWatch.changed(results.lazy.compactMap { $0?.change == .applied ? $0?.order.id : nil })
            return results
        }
        self.transitioner = transitioner
        let paymentRecorder = GroupCommitter<PaymentObservation, Result<PaymentRecord, PaymentRecordFailure>>(
            window: .zero, maxBatchSize: configuration.maxBatchSize, ownThread: ownThread, logger: logger
        ) { observations in
            let now = clock()
            let results = try await store.recordPayments(observations, at: now)
            for case .success(let record) in results where !record.duplicate {
                if record.attachedPayment {
                    metrics.record(.paymentCreated, seconds: now.timeIntervalSince(record.order.createdAt))
                }
                if let change = record.transition, change.change == .applied { metrics.recordChange(of: change.order, at: now) }
            }
            orderWatch.changed(
                results.lazy.compactMap {
                    guard case .success(let record) = $0, !record.duplicate else { return nil }
                    return record.order.id
                })
            return results
        }
        self.paymentRecorder = paymentRecorder
        let lifecycle = OrderLifecycle(
            store: store, transitioner: transitioner, paymentRecorder: paymentRecorder, gates: gates, metrics: metrics, provider: provider,
            expiry: configuration.expiry, paymentCreation: configuration.paymentCreation,
            creationSlots: AsyncSemaphore(
                limit: (provider as? GuardedProvider)?.status.maxInFlight ?? OrderLifecycle.creationSlotCount),
            logger: logger, clock: clock)
        self.lifecycle = lifecycle
        let deliverer = WebhookDeliverer(store: store, http: WebhookDeliverer.client, logger: logger, clock: clock)
        let jobs = JobRunner(
            store: store,
            handlers: {
                var handlers = lifecycle.handlers
                deliverer.register(in: &handlers)
                if let provider {
                    Reconciler(store: store, provider: provider, logger: logger, clock: clock)
                        .registerSchedule(in: &handlers, every: configuration.reconcileEvery)
                }
                return handlers.byKind
            }(),
            configuration: configuration.jobs, logger: logger, clock: crestClock)
        self.jobs = jobs
        var batchesInFlight: (@Sendable () -> Int)?
        if store.overlapsReservationBatches { batchesInFlight = { store.reservationBatchesInFlight } }
        self.batcher = GroupCommitter(
            window: configuration.batchWindow, lingerBelow: configuration.batchLingerBelow,
            maxBatchSize: configuration.maxBatchSize, inFlight: batchesInFlight, ownThread: ownThread, logger: logger, clock: crestClock
        ) { tickets in
            let outcomes = try await Self.commit(tickets, store: store, gates: gates, metrics: metrics, logger: logger)
            // The runner hears of the batch's jobs: its payments' creation at once, and its
            // expiry (the store's `order.expire-batch`) at its orders' deadline.
            if let first = tickets.first?.reservation {
                jobs.notify(runAt: first.createsPayment ? first.createdAt : first.expiresAt)
            }
            return outcomes
        }
    }

    /// Admitted reservations waiting for the next batch.
    package var queuedReservations: Int { batcher.queuedCount }

    /// Whether the store answers.
    package func isReady() async -> Bool {
        do {
            try await store.ping()
            return true
        } catch {
            logger.warning("store not ready", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// Reservations waiting for the next batch, and store calls waiting for a connection: the
    /// write path's saturation, for `/metrics`.
    package var saturation: (batchQueue: Int, connectionWaiters: Int) { (batcher.queuedCount, store.connectionWaiters) }

    /// A provider webhook arrived, `seconds` after the provider's event time.
    package func recordProviderWebhookLag(seconds: TimeInterval) {
        metrics.recordProviderWebhookLag(seconds: seconds)
    }

    /// Runs a store call, turning failures that are not domain answers into `UnavailableError`.
    func withStore<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as any DomainError {
            throw error
        } catch {
            logger.error("store call failed", metadata: ["call": "\(what)", "error": "\(error)"])
            throw UnavailableError(reason: "the store is unavailable")
        }
    }
}

/// Services run as one: they start together and see the same graceful shutdown.
struct ServiceSet: Service {
    let services: [any Service]

    func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for service in services {
                group.addTask { try await service.run() }
            }
            try await group.waitForAll()
        }
    }
}
