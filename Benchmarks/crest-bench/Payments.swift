import ArgumentParser
import AsyncHTTPClient
import CrestCore
import CrestEngine
import CrestHTTP
import CrestPayments
import CrestSimulator
import CrestStore
import CrestTestSupport
import Foundation
import Hummingbird
import Logging
import Prometheus
import ServiceLifecycle

/// Order to paid through the real loop: Crest and the provider simulator as HTTP servers on
/// loopback; each simulated buyer places an order, waits for its payment to exist, pays at the
/// simulator; the simulator's signed webhook makes the order paid. Latencies are measured from the
/// order's `order.created` event to its `order.paid` event (both written by the store); buyers
/// look for their payment every 10 ms, which is part of the figure. Everything — buyers, Crest,
/// simulator — shares one process, so the figures are for the whole loop on this machine.
struct Payments: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "payments", abstract: "Order-to-paid latency and payments settled per second.")

    @Option(help: "Orders (each one paid).") var orders = 2_000
    @Option(help: "Buyers at the same time.") var concurrency = 64
    @Option(help: "Share of provider API calls that time out (0…1).") var timeoutRate = 0.0
    @Option(help: "How long a timed-out call hangs at the simulator, ms.") var timeoutMs = 5_000

    func run() async throws {
        var faults = SimulatorFaults()
        faults.timeoutRate = timeoutRate
        faults.timeoutMs = timeoutMs
        try await PaymentLoop.run(faults: faults) { loop in
            let (engine, simulator, provider, dispatcher) = (loop.engine, loop.simulator, loop.provider, loop.dispatcher)
            let sale = try await engine.createSale(
                SaleDraft(
                    sku: "BENCH", title: "Payments benchmark", price: Money(amount: 100, currency: Currency("CNY")!),
                    stock: Int64(orders)))
            let started = ContinuousClock.now
            let placed: [OrderID?] = await concurrently(orders, width: concurrency) { index in
                guard
                    let order = try? await engine.placeOrder(
                        OrderRequest(saleID: sale.id, idempotencyKey: "k\(index)", buyer: "b\(index)", quantity: 1)
                    ).order
                else { return nil }
                // The buyer pays as soon as there is something to pay.
                while true {
                    if let payment = try? await engine.order(order.id).payment {
                        _ = try? simulator.simulate(payment.id, outcome: .succeeded)
                        return order.id
                    }
                    try? await Task.sleep(for: .milliseconds(10))
                }
            }
            while try await engine.sale(sale.id).stock.sold < Int64(orders) {
                try await Task.sleep(for: .milliseconds(5))
            }
            let elapsed = ContinuousClock.now - started
            var latencies: [Double] = []
            for id in placed.compactMap({ $0 }) {
                let events = try await engine.events(of: id)
                if let created = events.first(where: { $0.kind == .created }),
                    let paid = events.first(where: { $0.kind == .paid })
                {
                    latencies.append(paid.occurredAt.timeIntervalSince(created.occurredAt) * 1000)
                }
            }
            latencies.sort()
            func percentile(_ p: Double) -> String {
                String(format: "%.1f", latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))])
            }
            let breaker = provider.status.breaker
            print(
                "orders=\(orders) concurrency=\(concurrency) timeout_rate=\(timeoutRate) paid=\(latencies.count)"
                    + " settled_per_s=\(format(Double(orders) / elapsed.seconds))"
                    + " order_to_paid_ms p50=\(percentile(0.5)) p90=\(percentile(0.9)) p99=\(percentile(0.99))"
                    + " max=\(String(format: "%.1f", latencies.last ?? 0))"
                    + " breaker_opened=\(breaker.opened) webhooks=\(dispatcher.statistics.delivered)")
        }
    }

}
