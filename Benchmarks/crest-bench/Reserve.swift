import ArgumentParser
import CrestCore
import CrestStore
import Foundation

/// The embedded store's side of the write path alone: batches of admitted reservations committed
/// one after another, as the order batcher hands them over, each order a new buyer on one hot
/// sale. No HTTP, no gate, no engine: what one order costs the store's writer, and how long a
/// batch holds it (what a payment's webhook waits for beside a crowd). To see which part of a
/// batch costs what, run it under `perf record --call-graph dwarf` (valgrind 3.19 cannot read this
/// toolchain's DWARF 5 debug information).
struct Reserve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reserve",
        abstract: "Commit batches of reservations on the embedded store; report the writer's time per order and per batch.")

    @Option(help: "Orders in all.") var orders = 20_000
    @Option(help: "Reservations per batch.") var batch = 256
    @Option(
        help:
            "Jobs enqueued with each order, of creation (its payment at the provider) and expiry: both as with a provider, expiry alone without, none"
    )
    var jobs = "creation,expiry"

    private var jobKinds: Set<String> { Set(jobs.split(separator: ",").map(String.init)).subtracting(["none"]) }

    func validate() throws {
        guard orders >= 1, (1...100_000).contains(batch), jobKinds.isSubset(of: ["creation", "expiry"]) else {
            throw ValidationError("--orders ≥ 1, --batch 1…100,000, --jobs creation,expiry | expiry | creation | none")
        }
    }

    func run() async throws {
        try await withTemporaryStore { store, _ in
            let now = Date()
            let sale = Sale(
                id: SaleID.make(now: now), sku: "BENCH", title: "Reserve benchmark",
                price: Money(amount: 100, currency: Currency("CNY")!), perBuyerLimit: 1, startsAt: now, endsAt: nil,
                paymentWindowSeconds: 900, createdAt: now, stock: StockCounters(total: Int64(orders)))
            try await store.createSale(sale)
            var batchTimes: [Duration] = []
            var made = 0
            let started = ContinuousClock.now
            let startedCPU = processCPUSeconds()
            while made < orders {
                let count = min(batch, orders - made)
                let reservations = (made..<made + count).map { index in reservation(index, in: sale) }
                let before = ContinuousClock.now
                let result = try await store.reserve(reservations)
                batchTimes.append(ContinuousClock.now - before)
                guard result.outcomes.allSatisfy({ if case .reserved = $0 { true } else { false } }) else {
                    throw ValidationError("a reservation was refused")
                }
                made += count
            }
            let total = ContinuousClock.now - started
            let cpu = processCPUSeconds() - startedCPU
            let inWriter = batchTimes.reduce(Duration.zero, +)
            let sorted = batchTimes.sorted()
            let ms = { (duration: Duration) in String(format: "%.2f", duration.seconds * 1_000) }
            print(
                "orders=\(orders) batch=\(batch) jobs=\(jobs) us_per_order=\(String(format: "%.1f", total.seconds * 1e6 / Double(orders)))"
                    + " in_reserve_us=\(String(format: "%.1f", inWriter.seconds * 1e6 / Double(orders)))"
                    + " cpu_us_per_order=\(String(format: "%.1f", cpu * 1e6 / Double(orders)))"
                    + " batch_ms_p50=\(ms(sorted[sorted.count / 2])) batch_ms_max=\(ms(sorted[sorted.count - 1]))")
        }
    }

    private func reservation(_ index: Int, in sale: Sale) -> Reservation {
        let now = Date()
        let id = OrderID.make(now: now)
        let expiresAt = now.addingTimeInterval(900)
        let request = OrderRequest(saleID: sale.id, idempotencyKey: "key-\(index)", buyer: "buyer-\(index)", quantity: 1)
        var jobs: [NewJob] = []
        if jobKinds.contains("creation") { jobs.append(PaymentJobs.creation(of: id)) }
        if jobKinds.contains("expiry") { jobs.append(OrderJobs.expiry(of: id, at: expiresAt)) }
        return Reservation(
            orderID: id, request: request, amount: sale.price, createdAt: now, expiresAt: expiresAt, jobs: jobs)
    }
}
