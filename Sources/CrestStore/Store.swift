import CrestCore
import Foundation

/// Where Crest keeps sales, orders and their stock, described in the domain's terms.
///
/// Two implementations stand behind this one interface: SQLite (embedded, one node) and
/// PostgreSQL (many nodes). Everything above it — the engine, the HTTP layer — is the same for both.
///
/// The store is the authority on stock: `reserve(_:)` decides each reservation again inside its
/// transaction, whatever the engine's in-memory gate believed, so several nodes on one database
/// can never oversell. Every method that changes stock returns the counters it left behind, with
/// a version that orders those snapshots.
public protocol Store: JobQueue {
    /// Inserts a new sale with its counters.
    func createSale(_ sale: Sale) async throws

    /// The sale with its current counters, or `nil`.
    func sale(_ id: SaleID) async throws -> Sale?

    /// Replaces the sale's own rate limits (`SaleLimits.none`: the server's defaults again);
    /// the sale as it is now, or `nil` for an unknown sale.
    func updateSaleLimits(_ id: SaleID, to limits: SaleLimits) async throws -> Sale?

    /// The sale's counters now, with their version; `nil` for an unknown sale.
    func counters(of saleID: SaleID) async throws -> CounterSnapshot?

    /// Sales in id (creation) order, starting after `after`.
    func sales(after: SaleID?, limit: Int) async throws -> [Sale]

    func order(_ id: OrderID) async throws -> Order?

    /// The orders among `ids` that exist, by id, in one read: a batch job's orders (the expiry and
    /// payment creation of a reservation batch) read with one wait for the store instead of one each.
    func orders(ids: [OrderID]) async throws -> [OrderID: Order]

    /// The order created by the request with this idempotency key in this sale, if any.
    func order(saleID: SaleID, idempotencyKey: String) async throws -> Order?

    /// What the engine's stock gate needs to start answering for a sale from memory.
    func gateSnapshot(for saleID: SaleID) async throws -> GateSnapshot?

    /// The units `buyer` holds in the sale's live orders (awaiting payment or paid): what the
    /// per-buyer limit counts. `0` for an unknown buyer or sale.
    func holdings(of buyer: String, in saleID: SaleID) async throws -> Int

    /// Decides and records a batch of reservations in one transaction: for each, in order, either
    /// an order is created (stock `available → reserved`, its `order.created` event written and its
    /// follow-up jobs enqueued), or it is refused, or its idempotency key already names an order.
    /// The created orders' expiry is enqueued with them, one `order.expire-batch` job for the batch
    /// (`OrderJobs.expiries`): no order awaits payment without a job that will end its wait.
    /// Nothing is durable until the method returns.
    func reserve(_ batch: [Reservation]) async throws -> ReservationBatchResult

    /// Applies `event` to an order in one transaction: its status, its stock, its outbox event.
    ///
    /// Repeating the event that led to the current status changes nothing (`.repeated`). An event
    /// with no arrow from the current status changes nothing either (`.refused`); a `pay` refused
    /// because the order was cancelled or expired also flags the order `confirm_after_cancel` —
    /// money arrived that must go back. Throws `OrderError.orderNotFound`.
    func transition(_ id: OrderID, by event: Order.Event, at now: Date) async throws -> TransitionResult

    /// Applies several transitions in one transaction, in order, each as `transition(_:by:at:)`
    /// would; `nil` for an order that does not exist. For the jobs that change many orders at once.
    func transitions(_ requests: [TransitionRequest], at now: Date) async throws -> [TransitionResult?]

    /// Cancels the attempt named by an idempotency key: its order, if it placed one (as
    /// `transition(_:by: .cancel, at:)` would), or else a record that refuses the attempt if its
    /// reservation arrives later (TCC's empty rollback, which prevents a hanging reservation).
    ///
    /// `buyer` scopes it to that buyer's attempts: another buyer's order with this key is left
    /// alone (a record that refuses this buyer's attempt is made instead), and the record refuses
    /// only this buyer's attempt with the key. `nil` (an operator): any buyer's.
    /// Throws `OrderError.saleNotFound`.
    func cancelAttempt(saleID: SaleID, idempotencyKey: String, buyer: String?, at now: Date) async throws
        -> AttemptCancellationResult

    /// Records what the provider says about an order's payment, in one transaction, and acts on it:
    ///
    /// - an observation with an event id already recorded changes nothing (`duplicate`);
    /// - the payment's status only moves forward (`PaymentStatus.merged(with:)`), so observations
    ///   may arrive in any order;
    /// - the first `succeeded` makes a pending order `paid` (reserved → sold, `order.paid`); for an
    ///   order already cancelled or expired it enqueues a refund job instead and flags the order
    ///   `confirm_after_cancel`;
    /// - `refunded` makes a cancelled or expired order `refunded` (`order.refunded`).
    ///
    /// Several observations are recorded in one transaction, in order; each gets its own result:
    /// `OrderError.orderNotFound`, or `PaymentMismatchError` when the order already has another
    /// payment, fail that observation alone (and write nothing for it).
    func recordPayments(_ observations: [PaymentObservation], at now: Date) async throws
        -> [Result<PaymentRecord, PaymentRecordFailure>]

    /// Adds a merchant endpoint: from now on, every event it wants gets a delivery job in the
    /// transaction that writes the event.
    func createWebhookEndpoint(_ endpoint: WebhookEndpoint) async throws

    /// The endpoints that receive events, oldest first.
    func webhookEndpoints() async throws -> [WebhookEndpoint]

    /// Stops deliveries to an endpoint (pending ones end without sending); `false` if unknown.
    func deleteWebhookEndpoint(_ id: WebhookEndpointID, at now: Date) async throws -> Bool

    /// Adds an operator's risk rule.
    func createRiskRule(_ rule: RiskRule) async throws

    /// The risk rules not deleted (expired ones included), oldest first.
    func riskRules() async throws -> [RiskRule]

    /// Deletes a risk rule; `false` if unknown or deleted already. The row stays, with when it
    /// was deleted, for the record.
    func deleteRiskRule(_ id: RiskRuleID, at now: Date) async throws -> Bool

    /// Everything `crest audit` checks, read in one transaction (one consistent view, also while
    /// Crest runs). Reads the whole store: an operator's tool, not a request's.
    func auditRecords(at now: Date) async throws -> AuditRecords

    // MARK: Reconciliation

    /// Crest's side of a reconciliation window: the orders with a payment created in `from..<to`.
    func ordersWithPayment(createdFrom from: Date, to: Date) async throws -> [Order]

    func createReconciliationRun(_ run: ReconciliationRun) async throws

    /// Writes a run's state and counts.
    func updateReconciliationRun(_ run: ReconciliationRun) async throws

    func reconciliationRun(_ id: ReconciliationRunID) async throws -> ReconciliationRun?

    /// Runs, newest first, starting after `after`.
    func reconciliationRuns(after: ReconciliationRunID?, limit: Int) async throws -> [ReconciliationRun]

    /// A run's items in sequence order, starting after the sequence `after`, each reported one with
    /// its operator's resolution if any.
    func reconciliationItems(of run: ReconciliationRunID, after: Int?, limit: Int) async throws -> [ReconciliationItem]

    /// How many reported differences no operator resolved yet (each difference once, whatever
    /// the runs that found it): what `crest audit`'s differences-resolved check counts.
    func openReconciliationDifferences() async throws -> Int

    /// Records an operator's resolution of the reported difference `run`'s item `sequence` is
    /// about (its kind and payment: every run's item about it shows it). Once per difference: a
    /// second one with the same note changes nothing, with another note is refused.
    func resolveReconciliationItem(
        of run: ReconciliationRunID, sequence: Int, note: String, at now: Date
    ) async throws -> OperatorResolutionOutcome

    /// Records differences a run found and, for each heal, makes its change, all in one transaction:
    /// a heal and its record are written both or neither. Heals are idempotent: an observation goes
    /// through the payment state machine; a refund job has a unique key, and while an earlier
    /// heal's job is live the item is recorded `heal-under-way` and nothing is enqueued (once it
    /// ran and the difference is still there — the provider lost that refund too — the heal is
    /// made again, with the same idempotency key at the provider). A heal the store refuses (an
    /// observation `PaymentRecordFailure` refuses, an order no longer as the heal found it) heals
    /// nothing: the item is recorded `reported`, with the reason. Returns the items as recorded.
    func recordReconciliationItems(_ records: [ReconciliationRecord]) async throws -> [ReconciliationItem]

    /// What delivering one event to one endpoint needs: the endpoint (`nil` once deleted), the
    /// event, the order, and whether every earlier event of the order reached this endpoint.
    func webhookDelivery(_ delivery: WebhookJobs.Delivery) async throws -> WebhookDeliveryContext?

    /// Records that the endpoint accepted the event.
    func markDelivered(_ delivery: WebhookJobs.Delivery, at now: Date) async throws

    /// Marks an order for an operator. Throws `OrderError.orderNotFound`.
    func flagOrder(_ id: OrderID, _ flag: OrderFlag) async throws

    /// Orders in id (creation) order after `after`, filtered.
    func orders(matching filter: OrderFilter, after: OrderID?, limit: Int) async throws -> [Order]

    /// An order's outbox events in sequence order.
    func events(of orderID: OrderID) async throws -> [OrderEvent]

    /// The event feed: every order's events with a position above `after`, in position order, at
    /// most `limit`, with the feed's head. An event committed late (by a transaction that began
    /// before others committed) still gets a position above every one already read, so a
    /// consumer resuming from its last position never skips it.
    func eventFeed(after: Int64, limit: Int) async throws -> EventFeedPage

    /// The deliveries owed for an order's events, one per event and endpoint that wanted it, by
    /// sequence then endpoint: when each reached its endpoint, or that it has not yet.
    func deliveries(of orderID: OrderID) async throws -> [EventDelivery]

    /// Succeeds when the store can serve reads and writes.
    func ping() async throws

    /// Store calls waiting for a database connection now (a pool's waiters; 0 without a pool).
    var connectionWaiters: Int { get }

    /// Changes made through this store that other processes sharing it must hear of (jobs due,
    /// stock given back), as they commit — this process's own included. Each call is a new
    /// stream of what happens from then on; it ends when the store closes. A store no other process shares (the embedded one) has none.
    func changes() -> AsyncStream<StoreChange>

    /// Whether other processes write to this store too (several nodes on one database). A node's
    /// memory then knows only part of the idempotency keys, so a refusal from memory must first
    /// ask the store whether the key already placed an order elsewhere.
    var isShared: Bool { get }

    /// Whether the engine's reservation batcher should run its loop on a thread of its own
    /// rather than on the cooperative pool (where, after each commit, it queues behind the
    /// request handlers). Measured (Benchmarks/RESULTS.md): on the embedded store it cuts the
    /// open-loop tail; on PostgreSQL it cost throughput (2,340 and 2,480 orders/s with, 3,370 and
    /// 2,690 without, one node) — so only the embedded store asks for it.
    var prefersCommitterThread: Bool { get }

    /// How many reservation batches the engine may commit at once now (`reserve` is then called
    /// concurrently; asked whenever a batch could start). One, unless the store gains from
    /// deciding the next batch while the last is written (PostgreSQL's batches chained on one
    /// connection).
    var reservationBatchesInFlight: Int { get }

    /// Whether `reservationBatchesInFlight` can ever say more than one: otherwise the engine's
    /// batcher commits one batch after the other without asking.
    var overlapsReservationBatches: Bool { get }

    /// Releases files and connections. Calls after it fail.
    func close() async throws
}

extension Store {
    public func changes() -> AsyncStream<StoreChange> {
        AsyncStream { $0.finish() }
    }

    public var isShared: Bool { false }

    public var prefersCommitterThread: Bool { false }

    public var reservationBatchesInFlight: Int { 1 }

    public var overlapsReservationBatches: Bool { false }
}
