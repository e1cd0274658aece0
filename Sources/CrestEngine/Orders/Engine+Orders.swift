import CrestConcurrency
import CrestCore
import CrestStore
import Foundation
import Logging
import Tracing

/// An order as the answer to a placement: new, or the one an earlier request with the same
/// idempotency key created.
package struct PlacedOrder: Sendable {
    package var order: Order
    /// `true` when the idempotency key was seen before and this is that request's order.
    package var replayed: Bool

    package init(order: Order, replayed: Bool) {
        self.order = order
        self.replayed = replayed
    }
}

extension Engine {
    /// Places an order: answered from memory when the gate can (sold out, limit reached, replays
    /// of refused keys), otherwise reserved in the next batch and answered once it is durable.
    ///
    /// Throws `ValidationError` for bad input, `OrderError` for refusals, `WritePathFull` when the
    /// write path has no place for it (`WritePathLimit`) and `UnavailableError` when the store
    /// cannot commit.
    ///
    /// Runs on the engine's placement thread where it has one: beside a 1,500-connection crowd on
    /// two cores that took the durable goodput from 3,800–5,400 to 5,100–7,000 orders/s
    /// (Benchmarks/RESULTS.md) — an admitted attempt no longer waits a turn of the pool for its
    /// place and for its batch's answer, so places turn over faster.
    package func placeOrder(_ request: OrderRequest) async throws -> PlacedOrder {
        guard let placementThread else { return try await placeOrderOnCaller(request) }
        return try await withTaskExecutorPreference(placementThread) { try await placeOrderOnCaller(request) }
    }

    private func placeOrderOnCaller(_ request: OrderRequest) async throws -> PlacedOrder {
        try request.validate()
        if let writePath {
            do {
                let arrived = ContinuousClock.now
                try await writePath.acquire()
                metrics.record(.writePath, ContinuousClock.now - arrived)
            } catch let error as WritePathFull {
                metrics.countAttempt("write_path_full")
                throw error
            }
        }
        defer { writePath?.release() }
        do {
            let placed = try await withSpan("order.place") { span in
                if span.isRecording { span.attributes["crest.sale.id"] = request.saleID.description }
                let placed = try await place(request)
                if span.isRecording {
                    span.attributes["crest.order.id"] = placed.order.id.description
                    span.attributes["crest.order.replayed"] = placed.replayed
                }
                return placed
            }
            metrics.countAttempt(placed.replayed ? "replayed" : "accepted")
            return placed
        } catch let error as OrderError {
            metrics.countAttempt(EngineMetrics.reason(error))
            throw error
        } catch let error as UnavailableError {
            metrics.countAttempt("unavailable")
            throw error
        }
    }

    /// The refusal `placeOrder` would give `request` from the sale's gate alone — sold out, or the
    /// buyer's limit reached — remembered for its key and counted as `placeOrder` does; `nil` when
    /// the attempt needs more than memory can tell: invalid, admitted, a key the gate knows, another
    /// refusal, a sale whose gate is not loaded, or a shared store (another node may have placed
    /// the key: `placeOrder` asks the store). For callers that must not wait (`ChannelOrders`). The
    /// write path is not looked at: the caller refuses first while it is full.
    package func refusalFromMemory(_ request: OrderRequest) -> OrderError? {
        guard !store.isShared, (try? request.validate()) != nil, let gate = gates.loadedGate(for: request.saleID),
            let error = gate.soldOutOrLimitRefusal(request, now: clock())
        else { return nil }
        metrics.countAttempt(EngineMetrics.reason(error))
        return error
    }

    /// Places one validated request, in three steps: the gate's admission (with what only the
    /// store knows), the wait for a batch to commit the reservation, and the answer.
    private func place(_ request: OrderRequest) async throws -> PlacedOrder {
        let arrived = ContinuousClock.now
        guard let gate = try await withStore("load gate", { try await gates.gate(for: request.saleID) }) else {
            throw OrderError.saleNotFound
        }
        let now = clock()
        let admit: (_ keyIsNew: Bool) throws -> StockGate.Admission = { keyIsNew in
            try gate.admit(request, now: now, keyIsNew: keyIsNew) { sale in
                try self.reservation(for: request, in: sale, at: now)
            }
        }
        switch try await admission(of: request, gate: gate, admit: admit) {
        case .replay(let order):
            return try replay(order, for: request)
        case .decided(.refused(let error)):
            throw error
        case .decided(.knownKey):
            throw UnavailableError(reason: "idempotency key lookup did not settle")
        case .decided(.admitted(var ticket)):
            let decided = ContinuousClock.now
            metrics.record(.gate, decided - arrived)
            ticket.submittedAt = decided
            return try await reserve(ticket, of: request, gate: gate)
        }
    }

    private enum Admission {
        /// The key already placed this order.
        case replay(Order)
        case decided(StockGate.Admission)
    }

    /// Step 1: the gate's answer, after asking the store what only it knows — whether a key the
    /// gate knows placed an order (and which) and, on a shared store, whether another node placed
    /// this key or ended one of the buyer's orders.
    private func admission(
        of request: OrderRequest, gate: StockGate, admit: (_ keyIsNew: Bool) throws -> StockGate.Admission
    ) async throws -> Admission {
        var admission = try admit(false)
        var keyLookedUp = false
        if case .knownKey = admission {
            if let existing = try await placedOrder(for: request) { return .replay(existing) }
            keyLookedUp = true
            admission = try admit(true)
        }
        guard case .refused(let error) = admission, store.isShared, !keyLookedUp else { return .decided(admission) }
        // Another node may have placed this very key: its repeat gets that order, not a refusal.
        if let existing = try await placedOrder(for: request) { return .replay(existing) }
        // Or ended one of the buyer's orders: this node's gate heard only that stock came back.
        if case .buyerLimitReached = error {
            let held = try await withStore("read holdings") {
                try await store.holdings(of: request.buyer, in: request.saleID)
            }
            if gate.lowerHoldings(of: request.buyer, to: held, forgetting: request.idempotencyKey) {
                admission = try admit(true)
            }
        }
        return .decided(admission)
    }

    /// Steps 2 and 3: the admitted reservation waits for its batch to commit, then is answered with
    /// the store's decision.
    private func reserve(_ ticket: StockGate.Ticket, of request: OrderRequest, gate: StockGate) async throws
        -> PlacedOrder
    {
        var ticket = ticket
        preparePayment(of: &ticket.reservation)
        let outcome: ReservationOutcome
        do {
            // The buyer's wait for a batch to take the reservation and commit it, as a stage of
            // its own; when it is recorded, the batch's span links to it.
            let submitted = ContinuousClock.now
            outcome = try await withSpan("reservation.wait") { span in
                if span.isRecording { ticket.trace = span.context }
                return try await batcher.submit(ticket)
            }
            writePath?.record(latency: ContinuousClock.now - submitted)
        } catch is GroupCommitter<StockGate.Ticket, ReservationOutcome>.ShutdownError {
            gate.abandon([ticket])
            throw UnavailableError(reason: "Crest is shutting down")
        }
        return try placed(outcome, for: request)
    }

    private func placed(_ outcome: ReservationOutcome, for request: OrderRequest) throws -> PlacedOrder {
        switch outcome {
        case .reserved(let order): return PlacedOrder(order: order, replayed: false)
        case .duplicate(let order): return try replay(order, for: request)
        case .refused(let error): throw error
        }
    }

    /// How `placeOrder(_:answer:)` took an attempt.
    package enum CallbackPlacement: Sendable, Equatable {
        /// Refused at once from memory (sold out, the buyer's limit, …): counted as `placeOrder`
        /// counts it, remembered for the key; nothing was written.
        case refused(OrderError)
        /// Refused at once: the write path's queue is full (`503`, the key free for a retry).
        case overloaded(WritePathFull)
        /// Taken: its answer comes later, once — the order, or what `placeOrder` would throw.
        case answering
        /// Needs what only `placeOrder` can do at once — ask the store about a key the gate knows,
        /// load the gate, ask a shared store about a refusal — or is invalid: nothing was taken,
        /// and the attempt goes to `placeOrder` as it is.
        case elsewhere
    }

    /// Places `request` as `placeOrder` does, without suspending the caller: for a caller on an
    /// event loop that answers the attempt itself (the HTTP channel), where no task, router or hop
    /// to the placement thread is needed. Taken here: an attempt whose sale's gate is loaded and
    /// does not know its key — on a shared store only if the gate admits it (its refusal may be
    /// out of date: `placeOrder` asks the store; the store decides an admitted one again, in its
    /// batch, as it does `placeOrder`'s). It takes a place on the write path at once or
    /// waits for one in the same queue and deadline as `placeOrder`'s attempts (not suspended:
    /// `answer` comes once it is over); the gate decides it from memory, and the admitted
    /// reservation is handed to the order batcher with a callback. `answer` is called once, from
    /// the batcher's thread (or the one that gave back a place, or the queue's deadline), with the
    /// order or what `placeOrder` would throw; it must be quick (the batch's other answers wait
    /// for it). Should a key turn up known after a wait, the attempt is placed as `placeOrder`
    /// places it, in a task of its own. No span is made: callers use it where no tracer is
    /// bootstrapped.
    package func placeOrder(
        _ request: OrderRequest, answer: @escaping @Sendable (Result<PlacedOrder, any Error>) -> Void
    ) -> CallbackPlacement {
        let arrived = ContinuousClock.now
        guard (try? request.validate()) != nil, let gate = gates.loadedGate(for: request.saleID) else {
            return .elsewhere
        }
        guard let writePath else { return admitHolding(request, gate: gate, since: arrived, answer: answer) }
        // A free place, as usual, is taken without making the functions a wait needs.
        let acquisition: WritePathLimit.Acquisition =
            writePath.tryAcquire()
            ? .taken
            : writePath.acquire { [self] granted in
                switch granted {
                case .success:
                    let taken = ContinuousClock.now
                    metrics.record(.writePath, taken - arrived)
                    afterWaiting(request, gate: gate, since: taken, answer: answer)
                case .failure(let error):
                    metrics.countAttempt("write_path_full")
                    answer(.failure(error))
                }
            }
        switch acquisition {
        case .taken:
            let taken = ContinuousClock.now
            metrics.record(.writePath, taken - arrived)
            return admitHolding(request, gate: gate, since: taken, answer: answer)
        case .queued:
            return .answering
        case .refused(let full):
            metrics.countAttempt("write_path_full")
            return .overloaded(full)
        }
    }

    /// The gate's decision for an attempt holding its place on the write path (`since` it was
    /// taken); the admitted one goes to the batcher, with `answer` to be called once it
    /// committed. The place is given back with every other outcome.
    private func admitHolding(
        _ request: OrderRequest, gate: StockGate, since: ContinuousClock.Instant,
        answer: @escaping @Sendable (Result<PlacedOrder, any Error>) -> Void
    ) -> CallbackPlacement {
        let now = clock()
        var ticket: StockGate.Ticket
        do {
            switch try gate.admit(request, now: now, makeReservation: { try self.reservation(for: request, in: $0, at: now) }) {
            case .admitted(let admitted):
                ticket = admitted
            case .refused where store.isShared:
                // Another node may have placed this key, or ended one of the buyer's orders.
                writePath?.release()
                return .elsewhere
            case .refused(let error):
                writePath?.release()
                metrics.countAttempt(EngineMetrics.reason(error))
                return .refused(error)
            case .knownKey:
                writePath?.release()
                return .elsewhere
            }
        } catch {
            writePath?.release()
            return .elsewhere
        }
        preparePayment(of: &ticket.reservation)
        let submitted = ContinuousClock.now
        metrics.record(.gate, submitted - since)
        ticket.submittedAt = submitted
        batcher.submit(ticket) { [self, ticket] result in
            let placed: Result<PlacedOrder, any Error>
            switch result {
            case .success(let outcome):
                writePath?.record(latency: ContinuousClock.now - submitted)
                placed = Result { try self.placed(outcome, for: request) }
            case .failure(is GroupCommitter<StockGate.Ticket, ReservationOutcome>.ShutdownError):
                gate.abandon([ticket])
                placed = .failure(UnavailableError(reason: "Crest is shutting down"))
            case .failure(let error):
                placed = .failure(error)
            }
            writePath?.release()
            countAttempt(placed)
            answer(placed)
        }
        return .answering
    }

    /// An attempt that got its place after waiting: decided as at once, except that its answer
    /// is owed now — a refusal is answered, and what memory cannot decide is placed by `placeOrder`.
    private func afterWaiting(
        _ request: OrderRequest, gate: StockGate, since: ContinuousClock.Instant,
        answer: @escaping @Sendable (Result<PlacedOrder, any Error>) -> Void
    ) {
        switch admitHolding(request, gate: gate, since: since, answer: answer) {
        case .answering:
            break
        case .refused(let error):
            answer(.failure(error))
        case .overloaded(let full):
            answer(.failure(full))
        case .elsewhere:
            Task {
                do {
                    answer(.success(try await self.placeOrder(request)))
                } catch {
                    answer(.failure(error))
                }
            }
        }
    }

    /// Counts a placement's result in `crest_order_attempts_total`, as `placeOrder` does.
    private func countAttempt(_ placed: Result<PlacedOrder, any Error>) {
        switch placed {
        case .success(let placed): metrics.countAttempt(placed.replayed ? "replayed" : "accepted")
        case .failure(let error as OrderError): metrics.countAttempt(EngineMetrics.reason(error))
        case .failure(is UnavailableError): metrics.countAttempt("unavailable")
        case .failure: break
        }
    }

    /// What an admitted order whose payment is to be created writes with it: the trace its
    /// creation continues (the placing request's), and the payment's first drift check — written
    /// with the order rather than after the payment's creation, one write fewer on the way to a
    /// payment (none when the window ends first: the expiry asks the provider itself). Set here,
    /// not where the reservation is built: that runs under the gate's lock, and only an admitted
    /// order needs them.
    private func preparePayment(of reservation: inout Reservation) {
        guard reservation.createsPayment else { return }
        reservation.traceParent = TraceParent.current()
        if let check = lifecycle.firstDriftCheck(
            of: reservation.orderID, createdAt: reservation.createdAt, expiresAt: reservation.expiresAt)
        {
            reservation.jobs.append(check)
        }
    }

    private func reservation(for request: OrderRequest, in sale: Sale, at now: Date) throws -> Reservation {
        guard let amount = sale.price.times(request.quantity) else {
            throw OrderError.quantityAboveLimit(limit: request.limit(in: sale))
        }
        let id = OrderID.make(now: now)
        let expiresAt = sale.paymentDeadline(from: now)
        return Reservation(
            orderID: id, request: request, amount: amount, createdAt: now, expiresAt: expiresAt,
            createsPayment: provider != nil && lifecycle.paymentCreation == .order)
    }

    /// The order this request's idempotency key already placed in its sale, if any.
    private func placedOrder(for request: OrderRequest) async throws -> Order? {
        try await withStore("find key") {
            try await store.order(saleID: request.saleID, idempotencyKey: request.idempotencyKey)
        }
    }

    private func replay(_ order: Order, for request: OrderRequest) throws -> PlacedOrder {
        guard request.sameBody(buyer: order.buyer, quantity: order.quantity) else {
            throw OrderError.idempotencyKeyReused
        }
        return PlacedOrder(order: order, replayed: true)
    }

    /// Commits one batch of admitted tickets in one store transaction and settles every gate
    /// involved. When the commit fails, the gates give back what the tickets held and are
    /// reloaded from the store on next use, since the fate of a failed commit is not known.
    static func commit(
        _ tickets: [StockGate.Ticket], store: any Store, gates: StockGates, metrics: EngineMetrics, logger: Logger
    ) async throws -> [ReservationOutcome] {
        let started = ContinuousClock.now
        let result: ReservationBatchResult
        do {
            result = try await withSpan("reservation.batch") { span in
                if span.isRecording {
                    span.attributes["crest.batch.size"] = tickets.count
                    // One batch serves many requests, each in a trace of its own: the batch's span
                    // links to the wait span of each request it commits.
                    for context in tickets.lazy.compactMap(\.trace) { span.addLink(SpanLink(context: context, attributes: [:])) }
                }
                return try await store.reserve(tickets.map(\.reservation))
            }
        } catch {
            metrics.countCommitFailure()
            logger.error("reservation batch failed", metadata: ["size": "\(tickets.count)", "error": "\(error)"])
            // By gate, not by sale: a sale's gate forgotten after a failed commit is loaded again
            // while tickets of the old one are still queued, so one batch may hold tickets of two
            // gates of a sale, and a ticket is given back to the gate that admitted it.
            for gateTickets in Dictionary(grouping: tickets, by: { ObjectIdentifier($0.gate) }).values {
                guard let gate = gateTickets.first?.gate else { continue }
                gate.abandon(gateTickets)
                gates.forget(gate.sale.id)
            }
            throw UnavailableError(reason: "the store could not commit the reservation")
        }
        let committed = ContinuousClock.now
        metrics.recordCommit(size: tickets.count, duration: committed - started)
        for ticket in tickets {
            if let submitted = ticket.submittedAt { metrics.record(.batchWait, started - submitted) }
            metrics.record(.commit, committed - started)
        }
        // Settled on the gate that admitted each ticket (see above: a batch may hold two of a sale).
        var byGate: [ObjectIdentifier: [(ticket: StockGate.Ticket, outcome: ReservationOutcome)]] = [:]
        for (ticket, outcome) in zip(tickets, result.outcomes) {
            byGate[ObjectIdentifier(ticket.gate), default: []].append((ticket, outcome))
        }
        for decided in byGate.values {
            guard let gate = decided.first?.ticket.gate else { continue }
            gate.settle(decided, counters: result.counters[gate.sale.id])
        }
        // The store answers the counters of the batch's sales.
        for (saleID, counters) in result.counters { metrics.publish(counters.counters, of: saleID) }
        return result.outcomes
    }

    /// A stage of placing an order that the HTTP layer times (`admission`, `answer`).
    package func recordPlacement(_ stage: EngineMetrics.PlacementStage, _ duration: Duration) {
        metrics.record(stage, duration)
    }

    /// The order with its current status.
    package func order(_ id: OrderID) async throws -> Order {
        guard let order = try await withStore("read order", { try await store.order(id) }) else {
            throw OrderError.orderNotFound
        }
        return order
    }

    /// The order, read again after each change of it committed on this node for as long as
    /// `waiting` holds for what was read, until `deadline` (see `OrderWatch`).
    package func order(
        _ id: OrderID, waitingUntil deadline: ContinuousClock.Instant, while waiting: (Order) -> Bool
    ) async throws -> Order {
        try await orderWatch.read(id, until: deadline, { try await order(id) }, while: waiting)
    }

    /// Reads of an order registered for its next change now (waiting, or about to).
    package var waitingReads: Int { orderWatch.registered }

    /// Cancels an order awaiting payment; its stock is available again at once. Cancelling a
    /// cancelled order returns it unchanged; any other final status is `OrderError.notPending`.
    package func cancelOrder(_ id: OrderID) async throws -> Order {
        let result = try await withStore("cancel order") {
            try await store.transition(id, by: .cancel, at: clock())
        }
        return try cancelled(result)
    }

    /// Cancels the attempt named by an idempotency key (TCC cancel by the transaction's name): its
    /// order if it placed one, or else a record that refuses the attempt should it arrive later,
    /// so a client that gave up on an unanswered request can be sure it will not hold stock.
    /// `buyer` limits it to that buyer's attempts (`Store.cancelAttempt`); `nil`: an operator's.
    package func cancelAttempt(saleID: SaleID, idempotencyKey: String, buyer: String? = nil) async throws
        -> AttemptCancellation
    {
        try OrderRequest.validateKey(idempotencyKey)
        let now = clock()
        let result = try await withStore("cancel attempt") {
            try await store.cancelAttempt(saleID: saleID, idempotencyKey: idempotencyKey, buyer: buyer, at: now)
        }
        switch result {
        case .order(let transition):
            let order = try cancelled(transition)
            return AttemptCancellation(
                saleID: saleID, idempotencyKey: idempotencyKey, cancelledAt: order.updatedAt, order: order)
        case .recorded(let at):
            logger.info("attempt cancelled before it placed an order", metadata: ["sale": "\(saleID)"])
            return AttemptCancellation(saleID: saleID, idempotencyKey: idempotencyKey, cancelledAt: at, order: nil)
        }
    }

    private func cancelled(_ result: TransitionResult) throws -> Order {
        switch result.change {
        case .applied:
            lifecycle.released(result)
            orderWatch.changed(CollectionOfOne(result.order.id))
            logger.info(
                "order cancelled",
                metadata: [
                    "order": "\(result.order.id)", "sale": "\(result.order.saleID)",
                    "quantity": "\(result.order.quantity)",
                ])
        case .repeated:
            break
        case .refused:
            throw OrderError.notPending(current: result.order.status)
        }
        return result.order
    }

    /// An order with its events and each event's deliveries to merchant endpoints: where its life
    /// went, for support (`GET /v1/orders/{id}/timeline`).
    package func timeline(of id: OrderID) async throws -> OrderTimeline {
        let order = try await order(id)
        let (events, deliveries) = try await withStore("read an order's timeline") {
            (try await store.events(of: id), try await store.deliveries(of: id))
        }
        return OrderTimeline(order: order, events: events, deliveries: deliveries)
    }

    /// An order's outbox events, oldest first.
    package func events(of id: OrderID) async throws -> [OrderEvent] {
        let events = try await withStore("read events") { try await store.events(of: id) }
        if events.isEmpty { _ = try await order(id) }
        return events
    }

    /// The event feed after position `after` (see `Store.eventFeed(after:limit:)`).
    package func eventFeed(after: Int64, limit: Int) async throws -> EventFeedPage {
        try await withStore("read the event feed") { try await store.eventFeed(after: after, limit: limit) }
    }

    /// Orders for operators, in creation order after `after`.
    package func orders(matching filter: OrderFilter, after: OrderID?, limit: Int) async throws -> [Order] {
        try await withStore("list orders") { try await store.orders(matching: filter, after: after, limit: limit) }
    }

    /// Records that the order's payment succeeded: a confirmation job turns its reservation into a
    /// sale. Internal until the payments work connects a provider; tests reach it with
    /// `@testable import` — no route pretends to be a payment.
    func confirmPayment(_ id: OrderID) async throws -> EnqueuedJob {
        let now = clock()
        let enqueued = try await withStore("enqueue confirmation") {
            try await store.enqueue([OrderJobs.confirmation(of: id)], at: now)
        }
        jobs.notify(runAt: now)
        return enqueued[0]
    }
}

/// An order, its events (each a stage of its life, with its time) and their deliveries.
package struct OrderTimeline: Sendable {
    package var order: Order
    package var events: [OrderEvent]
    package var deliveries: [EventDelivery]
}
