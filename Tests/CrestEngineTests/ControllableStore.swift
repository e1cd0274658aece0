import CrestCore
import CrestEngine
import CrestFixtures
import CrestPayments
import CrestStore
import CrestTestSupport
import Foundation
import Testing

/// A real SQLite store with switches for tests: hold reservation batches until released, and fail
/// them, transitions or enqueues (as a full disk or a lost database connection would).
final class ControllableStore: ForwardingStore, @unchecked Sendable {
    private let held = Locked<[CheckedContinuation<Void, Never>]?>(nil)
    private let failing = Locked(false)
    private let failingTransitions = Locked<Set<Order.Event>>([])
    private let failingEnqueues = Locked<(kind: String, left: Int)?>(nil)
    /// The size of each batch `reserve` was called with, in order.
    let batchSizes = Locked<[Int]>([])
    /// The orders read one by one (`order(_:)`), and the id lists read at once (`orders(ids:)`).
    let reads = Locked<(single: [OrderID], batches: [[OrderID]])>(([], []))

    struct InjectedFailure: Error {}

    init(directory: URL) throws {
        super.init(try SQLiteStore(directory: directory))
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

    /// The next `times` calls of `enqueue` with a job of `kind` fail; the others pass.
    func failEnqueues(of kind: String, times: Int) { failingEnqueues.withLock { $0 = (kind, times) } }

    override func enqueue(_ jobs: [NewJob], at now: Date) async throws -> [EnqueuedJob] {
        let fail = failingEnqueues.withLock { failing -> Bool in
            guard let current = failing, current.left > 0, jobs.contains(where: { $0.kind == current.kind }) else { return false }
            failing = (current.kind, current.left - 1)
            return true
        }
        if fail { throw InjectedFailure() }
        return try await inner.enqueue(jobs, at: now)
    }

    override func reserve(_ batch: [Reservation]) async throws -> ReservationBatchResult {
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

    override func gateSnapshot(for saleID: SaleID) async throws -> GateSnapshot? {
        if failing.value { throw InjectedFailure() }
        return try await inner.gateSnapshot(for: saleID)
    }

    override func transition(_ id: OrderID, by event: Order.Event, at now: Date) async throws -> TransitionResult {
        if failingTransitions.value.contains(event) { throw InjectedFailure() }
        return try await inner.transition(id, by: event, at: now)
    }

    override func transitions(_ requests: [TransitionRequest], at now: Date) async throws -> [TransitionResult?] {
        if requests.contains(where: { failingTransitions.value.contains($0.event) }) { throw InjectedFailure() }
        return try await inner.transitions(requests, at: now)
    }

    override func order(_ id: OrderID) async throws -> Order? {
        reads.withLock { $0.single.append(id) }
        return try await inner.order(id)
    }

    override func orders(ids: [OrderID]) async throws -> [OrderID: Order] {
        reads.withLock { $0.batches.append(ids) }
        return try await inner.orders(ids: ids)
    }

    override func ping() async throws {
        if failing.value { throw InjectedFailure() }
        try await inner.ping()
    }
}

extension EngineFixture {
    /// An engine whose store is a `ControllableStore`, handed to `body` beside the fixture.
    static func withControllableStore<T: Sendable>(
        configuration: EngineConfiguration = .init(),
        clock: any CrestClock = SystemClock(),
        provider: (any PaymentProvider)? = nil,
        _ body: (EngineFixture, ControllableStore) async throws -> T
    ) async throws -> T {
        let store = Locked<ControllableStore?>(nil)
        return try await with(
            configuration: configuration, clock: clock, provider: provider,
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
