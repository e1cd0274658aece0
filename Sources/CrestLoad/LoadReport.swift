import CrestCore
import Foundation
import Histogram

/// The outcome of a load test: what was sent, what came back, how fast, and whether the server
/// kept its promises. `--json` prints it as is.
package struct LoadReport: Codable, Sendable {
    package struct Latency: Codable, Sendable {
        package var p50: Double
        package var p90: Double
        package var p99: Double
        package var p999: Double
        package var max: Double
        package var mean: Double

        init(_ histogram: Histogram<UInt64>) {
            func ms(_ micros: UInt64) -> Double { (Double(micros) / 1000 * 1000).rounded() / 1000 }
            guard histogram.totalCount > 0 else {
                (p50, p90, p99, p999, max, mean) = (0, 0, 0, 0, 0, 0)
                return
            }
            p50 = ms(histogram.valueAtPercentile(50))
            p90 = ms(histogram.valueAtPercentile(90))
            p99 = ms(histogram.valueAtPercentile(99))
            p999 = ms(histogram.valueAtPercentile(99.9))
            max = ms(histogram.max)
            mean = (histogram.mean / 1000 * 1000).rounded() / 1000
        }
    }

    /// The sale's counters as the server reported them.
    package typealias Counters = StockCounters

    package struct Payments: Codable, Sendable {
        /// Accepted orders the run chose to pay.
        package var chosen: Int
        /// Of those, paid at the provider.
        package var paid: Int
        /// Of the paid ones, those whose order ended `refunded`: paid after it had expired, the
        /// money given back by Crest. Not paid in time.
        package var paidLate: Int = 0
        /// Payments the provider did not take, or whose order never showed a pay URL in time.
        package var failed: Int
        /// Why the failed ones were not paid, by reason (`NotPaid`'s raw values).
        package var notPaid: [String: Int] = [:]
        /// Orders of this run that ended `paid`, `expired`, `refunded`, `cancelled` — and still pending.
        package var ordersPaid: Int
        package var ordersExpired: Int
        package var ordersRefunded: Int
        package var ordersCancelled: Int
        package var ordersPending: Int

        /// Why a chosen order could not be paid.
        package enum NotPaid: String, Codable, Sendable, CaseIterable {
            /// Its payment window closed before its payment was created at the provider (Crest or
            /// the provider was behind, or unavailable at checkout).
            case noPaymentInWindow = "no_payment_in_window"
            /// The provider did not take the payment.
            case providerRefused = "provider_refused"
            /// The order was no longer awaiting payment when its payment appeared.
            case orderClosed = "order_closed"
            /// Crest did not answer when asked for the order.
            case orderUnreadable = "order_unreadable"

            /// The reason in words, for a story.
            package var explanation: String {
                switch self {
                case .noPaymentInWindow:
                    "their payment window closed before their payment was created at the provider (payment creation fell behind)"
                case .providerRefused: "the provider refused the payment"
                case .orderClosed: "the order had ended before it could be paid"
                case .orderUnreadable: "Crest did not answer when asked for the order"
                }
            }
        }

        /// "12 could not be paid: their payment window closed …; 1 …", or nil when every chosen
        /// order was paid.
        package var notPaidStory: String? {
            guard failed > 0 else { return nil }
            let parts = NotPaid.allCases.compactMap { reason -> String? in
                guard let count = notPaid[reason.rawValue], count > 0 else { return nil }
                return "\(count): \(reason.explanation)"
            }
            return "\(failed) of the \(chosen) orders chosen to pay could not be paid — " + parts.joined(separator: "; ")
        }
    }

    package struct Check: Codable, Sendable {
        package var name: String
        package var passed: Bool
        package var detail: String
    }

    package var url: String
    package var saleId: String
    package var pace: String
    package var attempts: Int
    package var replays: Int
    package var durationSeconds: Double
    package var attemptsPerSecond: Double
    /// Distinct orders created (201 to a new attempt).
    package var accepted: Int
    /// Accepted orders per second, from the start to the last acceptance.
    package var acceptedPerSecond: Double
    /// From the start to the first sold-out answer.
    package var soldOutAfterSeconds: Double?
    /// Orders accepted before the first sold-out answer, per second of `soldOutAfterSeconds`.
    package var sellOutOrdersPerSecond: Double?
    /// Answers by status and problem kind, and unanswered attempts by reason.
    package var outcomes: [String: Int]
    package var unanswered: Int
    /// Answers that refused an attempt for load before looking at it, apart from other refusals:
    /// `429` (rate limits) and `503` (write path full, or shed). Counted in `outcomes` too.
    package var rateLimited: Int
    package var overloaded: Int
    /// Of those, sent again with their key after `Retry-After` (`--retry-refused`).
    package var retriedAfterRefusal: Int
    /// Milliseconds; in an open-loop run, from the moment each attempt was due.
    package var latencyMs: Latency
    /// The sale's counters when the audit read them.
    package var stock: Counters
    package var payments: Payments?
    package var checks: [Check]
    package var auditPassed: Bool

    /// The report for a person.
    package var text: String {
        var lines: [String] = []
        lines.append("sale \(saleId) at \(url), \(pace)")
        lines.append(
            "attempts: \(attempts) (\(replays) repeated) in \(Self.seconds(durationSeconds)) s — \(Self.rate(attemptsPerSecond))/s")
        var accepted = "accepted: \(self.accepted) orders — \(Self.rate(acceptedPerSecond))/s"
        if let soldOutAfterSeconds, let sellOutOrdersPerSecond {
            accepted += "; sold out after \(Self.seconds(soldOutAfterSeconds)) s (\(Self.rate(sellOutOrdersPerSecond)) orders/s until then)"
        }
        lines.append(accepted)
        let breakdown = outcomes.sorted { $0.value > $1.value }.map { "\($0.key) ×\($0.value)" }
        lines.append("answers: " + breakdown.joined(separator: ", "))
        if rateLimited + overloaded > 0 {
            lines.append(
                "refused for load: \(rateLimited) × 429, \(overloaded) × 503 (overloaded or shed); \(retriedAfterRefusal) sent again after Retry-After"
            )
        }
        lines.append(
            "latency ms: p50 \(latencyMs.p50)  p90 \(latencyMs.p90)  p99 \(latencyMs.p99)  p99.9 \(latencyMs.p999)  max \(latencyMs.max)")
        lines.append(
            "stock: total \(stock.total), available \(stock.available), reserved \(stock.reserved), sold \(stock.sold)")
        if let payments {
            lines.append(
                "payments: \(payments.paid) of \(payments.chosen) chosen orders paid, \(payments.paidLate) too late and refunded (\(payments.failed) not paid\(payments.notPaid.isEmpty ? "" : ": " + payments.notPaid.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))); orders now paid \(payments.ordersPaid), expired \(payments.ordersExpired), refunded \(payments.ordersRefunded), cancelled \(payments.ordersCancelled), pending \(payments.ordersPending)"
            )
        }
        lines.append(auditPassed ? "audit: passed" : "AUDIT FAILED")
        for check in checks {
            lines.append("  \(check.passed ? "ok  " : "FAIL") \(check.name): \(check.detail)")
        }
        return lines.joined(separator: "\n")
    }

    /// The report as indented JSON with sorted keys.
    package func jsonText() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    package static func seconds(_ value: Double) -> String { String(format: "%.2f", value) }
    package static func rate(_ value: Double) -> String { String(format: "%.0f", value) }
}
