import CrestCore
import CrestEngine
import CrestPayments
import CrestStore
import CrestTestSupport
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// An engine on a fresh embedded store in a temporary directory, with its batcher and job runner running.
struct EngineFixture {
    let engine: Engine
    let directory: URL

    /// Runs `body` with a running engine, then shuts the batcher down gracefully and removes the data.
    /// With `directory`, the store lives there and is kept; without, a temporary one is removed at the end.
    static func with<T: Sendable>(
        directory: URL? = nil,
        configuration: EngineConfiguration = .init(),
        clock: any CrestClock = SystemClock(),
        provider: (any PaymentProvider)? = nil,
        makeStore: (URL) throws -> any Store = { try SQLiteStore(directory: $0) },
        _ body: (EngineFixture) async throws -> T
    ) async throws -> T {
        let keep = directory != nil
        let directory = directory ?? Self.temporaryDirectory()
        defer { if !keep { try? FileManager.default.removeItem(at: directory) } }
        let store = try makeStore(directory)
        var logger = Logger(label: "crest.test")
        logger.logLevel = .warning
        let engine = Engine(store: store, configuration: configuration, logger: logger, provider: provider, clock: clock)
        let group = ServiceGroup(services: [engine.batcherService, engine.jobRunnerService], logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            defer { tasks.cancelAll() }
            do {
                let result = try await body(EngineFixture(engine: engine, directory: directory))
                await group.triggerGracefulShutdown()
                try await tasks.next()
                try await store.close()
                return result
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
        }
    }

    static func temporaryDirectory() -> URL {
        FileManager.default.temporaryDirectory.appending(path: "crest-test-\(UUID().uuidString)")
    }

    /// A sale open now with `stock` units at ¥10.00.
    func sale(
        stock: Int64, perBuyerLimit: Int = 1, startsAt: Date? = nil, endsAt: Date? = nil, paymentWindowSeconds: Int = 900
    ) async throws -> Sale {
        try await engine.createSale(
            SaleDraft(
                sku: "PHONE-1", title: "Phone", price: Money(amount: 1000, currency: Currency("CNY")!), stock: stock,
                perBuyerLimit: perBuyerLimit, startsAt: startsAt, endsAt: endsAt,
                paymentWindowSeconds: paymentWindowSeconds))
    }

    /// The sale's counters now, after checking that they are conserved (available + reserved +
    /// sold = total, none negative).
    @discardableResult
    func conservedCounters(_ sale: Sale, sourceLocation: SourceLocation = #_sourceLocation) async throws
        -> StockCounters
    {
        let counters = try await engine.sale(sale.id).stock
        #expect(counters.isConserved, "counters not conserved: \(counters)", sourceLocation: sourceLocation)
        return counters
    }

    /// Waits until the order has `status`.
    func waitFor(_ id: OrderID, status: Order.Status, timeout: Duration = .seconds(60)) async throws -> Order {
        let reached = try await eventually(timeout: timeout) { try await engine.order(id).status == status }
        let order = try await engine.order(id)
        #expect(reached, "order \(id) is \(order.status.rawValue), not \(status.rawValue)")
        return order
    }

    func order(_ sale: Sale, buyer: String, key: String, quantity: Int = 1) async throws -> PlacedOrder {
        try await engine.placeOrder(
            OrderRequest(saleID: sale.id, idempotencyKey: key, buyer: buyer, quantity: quantity))
    }
}

/// How one attempt ended, comparable across replays.
enum AttemptResult: Hashable, Sendable {
    case order(OrderID)
    case refused(OrderError)
    case failed(String)

    static func of(_ body: () async throws -> PlacedOrder) async -> AttemptResult {
        do {
            return .order(try await body().order.id)
        } catch let error as OrderError {
            return .refused(error)
        } catch {
            return .failed("\(error)")
        }
    }
}

extension EngineConfiguration {
    /// Jobs polled every 20 ms and retried after 10 to 50 ms: a test's jobs run at once.
    static let quickJobs = EngineConfiguration(
        jobs: JobRunnerConfiguration(
            pollInterval: .milliseconds(20), backoff: Backoff(base: .milliseconds(10), maximum: .milliseconds(50), jitter: 0)))

    /// As `quickJobs`, and the batcher lingers 10 s for more reservations: with the test's clock
    /// (which the batcher lingers on), attempts made together commit in one batch when it moves.
    static let quickJobsLingering = EngineConfiguration(batchWindow: .seconds(10), jobs: quickJobs.jobs)
}
