import ArgumentParser
import CrestCore
import CrestEngine
import CrestStore
import CrestTestSupport
import Foundation
import Logging
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// In-process benchmarks of the parts that have no HTTP route of their own: the job queue's
/// burn-down, the expiry of a sale's unpaid orders, the store's order batches and their syncs, and
/// more (one subcommand each), each printing its results.
@main
struct CrestBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crest-bench", abstract: "Benchmarks of Crest's parts that have no HTTP route of their own.",
        subcommands: [
            JobBurnDown.self, Expiry.self, Payments.self, Passes.self, Limiter.self, Reconcile.self, Chaos.self, Reserve.self,
            SyncWrites.self,
        ])
}

/// Runs `body` with a runner (under a service group) and an engine-less store, then stops it.
func withTemporaryStore<T>(_ body: (SQLiteStore, URL) async throws -> T) async throws -> T {
    let directory = FileManager.default.temporaryDirectory.appending(path: "crest-bench-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: directory) }
    let store = try SQLiteStore(directory: directory)
    let result = try await body(store, directory)
    try await store.close()
    return result
}

func quietLogger() -> Logger {
    var logger = Logger(label: "crest.bench")
    logger.logLevel = .error
    return logger
}

/// The process's CPU time so far (user and system, every thread), in seconds: work without the
/// waits for the disk, steadier than the wall clock on a shared machine.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return [usage.ru_utime, usage.ru_stime].reduce(0) { $0 + Double($1.tv_sec) + Double($1.tv_usec) / 1e6 }
}

func format(_ value: Double) -> String { String(format: "%.0f", value) }

struct JobBurnDown: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs", abstract: "Enqueue no-op jobs, run them all, report jobs/s.")

    @Option(help: "Jobs to enqueue.") var count = 100_000
    @Option(help: "Workers (default: the runner's default).") var workers = JobRunnerConfiguration().workers

    func run() async throws {
        try await withTemporaryStore { store, _ in
            let enqueueStart = ContinuousClock.now
            for chunk in stride(from: 0, to: count, by: 10_000) {
                let jobs = Array(
                    repeating: NewJob(kind: "bench.noop", payload: "{}"), count: min(10_000, count - chunk))
                _ = try await store.enqueue(jobs, at: Date())
            }
            let enqueued = ContinuousClock.now - enqueueStart
            let ran = Locked(0)
            let noop = JobHandlerFunction { _ in
                ran.withLock { $0 += 1 }
                return .completed
            }
            let runner = JobRunner(
                store: store, handlers: ["bench.noop": noop],
                configuration: JobRunnerConfiguration(workers: workers, pollInterval: .milliseconds(50)),
                logger: quietLogger())
            let group = ServiceGroup(services: [runner], logger: quietLogger())
            let started = ContinuousClock.now
            let elapsed = try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                // Done when every job ran and none is left with work ahead in the store (its
                // completion recorded). The statistics do not count completed jobs.
                while ran.value < count { try await Task.sleep(for: .milliseconds(2)) }
                while try await store.jobStatistics(at: Date()).counts["bench.noop"]?.values.contains(where: { $0 > 0 }) == true {
                    try await Task.sleep(for: .milliseconds(2))
                }
                let elapsed = ContinuousClock.now - started
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                return elapsed
            }
            print(
                "jobs=\(count) workers=\(workers) enqueue_s=\(String(format: "%.2f", enqueued.seconds))"
                    + " run_s=\(String(format: "%.2f", elapsed.seconds)) jobs_per_s=\(format(Double(count) / elapsed.seconds))"
                    + " runs=\(ran.value)")
        }
    }
}

struct Expiry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "expiry",
        abstract: "Reserve a sale's whole stock, let every order expire, report the time until all stock is back.")

    @Option(help: "Orders (= units of stock).") var orders = 10_000

    func run() async throws {
        try await withTemporaryStore { store, _ in
            // The engine's clock is ours: the orders expire when we move it past their window.
            let clock = AdjustableClock()
            let engine = Engine(
                store: store,
                configuration: EngineConfiguration(jobs: JobRunnerConfiguration(pollInterval: .milliseconds(50))),
                logger: quietLogger(), clock: clock)
            let group = ServiceGroup(services: [engine.batcherService, engine.jobRunnerService], logger: quietLogger())
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                let sale = try await engine.createSale(
                    SaleDraft(
                        sku: "BENCH", title: "Expiry benchmark", price: Money(amount: 100, currency: Currency("CNY")!),
                        stock: Int64(orders), paymentWindowSeconds: 60))
                let placed = await concurrently(orders, width: 512) { index in
                    (try? await engine.placeOrder(
                        OrderRequest(saleID: sale.id, idempotencyKey: "k\(index)", buyer: "b\(index)", quantity: 1))) != nil
                }
                guard placed.allSatisfy({ $0 }) else { throw ValidationError("not every order was placed") }
                let started = ContinuousClock.now
                clock.advance(by: .seconds(61))
                while try await engine.sale(sale.id).stock.available != Int64(orders) {
                    try await Task.sleep(for: .milliseconds(5))
                }
                let elapsed = ContinuousClock.now - started
                let counters = try await engine.sale(sale.id).stock
                print(
                    "orders=\(orders) all_back_s=\(String(format: "%.2f", elapsed.seconds))"
                        + " expiries_per_s=\(format(Double(orders) / elapsed.seconds)) conserved=\(counters.isConserved)"
                        + " counters=\(counters)")
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
        }
    }
}
