import CrestCore
import Foundation
import Synchronization

/// The faults the simulator injects, changeable while it runs (`PUT /v1/faults`). Rates are
/// probabilities from 0 to 1, drawn from the simulator's seeded generator.
package struct SimulatorFaults: Codable, Sendable, Hashable {
    /// Added to every API answer, after the call took effect: `latencyMs` plus a uniform draw up
    /// to `latencyJitterMs`.
    package var latencyMs: Int = 0
    package var latencyJitterMs: Int = 0
    /// Share of API calls answered `500` without taking effect.
    package var errorRate: Double = 0
    /// Share of API calls that take effect, then hang for `timeoutMs` and answer `504`.
    package var timeoutRate: Double = 0
    package var timeoutMs: Int = 30_000
    /// Share of webhooks sent twice.
    package var webhookDuplicateRate: Double = 0
    /// Share of webhooks held back by up to `webhookReorderMs`, so later ones overtake them.
    package var webhookReorderRate: Double = 0
    package var webhookReorderMs: Int = 500
    /// Every webhook waits this long before its first delivery.
    package var webhookDelayMs: Int = 0
    /// Share of webhooks never sent.
    package var webhookDropRate: Double = 0
    /// Reconciliation's differences, each kept as the simulator's truth (`GET /v1/truth`). A
    /// successful payment gets at most one of the first five (one draw, in this order): its
    /// success webhook lost, a failure after its success, its statement line one minor unit off,
    /// in another currency, or left out.
    package var successWebhookLossRate: Double = 0
    package var failAfterSuccessRate: Double = 0
    package var statementAmountRate: Double = 0
    package var statementCurrencyRate: Double = 0
    package var statementMissingRate: Double = 0
    /// Share of successes charged a second time (a new payment for the same reference, no webhook).
    package var duplicateChargeRate: Double = 0
    /// Share of successes followed by a charge whose reference is no order.
    package var orphanChargeRate: Double = 0
    /// Share of refunds answered as made that the provider never makes.
    package var refundLossRate: Double = 0

    package init() {}

    /// The first problem with these values, if any.
    package var problem: String? {
        let rates = [
            errorRate, timeoutRate, webhookDuplicateRate, webhookReorderRate, webhookDropRate, duplicateChargeRate,
            orphanChargeRate, refundLossRate,
        ]
        if rates.contains(where: { !(0...1).contains($0) }) { return "rates must be between 0 and 1" }
        let exclusive = [successWebhookLossRate, failAfterSuccessRate, statementAmountRate, statementCurrencyRate, statementMissingRate]
        if exclusive.contains(where: { !(0...1).contains($0) }) || exclusive.reduce(0, +) > 1 {
            return "the rates of a success's own differences must be between 0 and 1, and add up to at most 1"
        }
        let counts = [latencyMs, latencyJitterMs, timeoutMs, webhookReorderMs, webhookDelayMs]
        if counts.contains(where: { $0 < 0 || $0 > 600_000 }) { return "durations and counts must be 0…600,000" }
        return nil
    }
}

/// A reproducible random source shared by the simulator's tasks: the same seed gives the same
/// faults (payment ids are not drawn from it: they must differ across runs).
final class SeededRandom: Sendable {
    private let state: Mutex<SplitMix64>

    init(seed: UInt64) { state = Mutex(SplitMix64(seed: seed)) }

    func next() -> UInt64 { state.withLock { $0.next() } }

    /// Uniform in 0..<1.
    func unit() -> Double { state.withLock { $0.unit() } }

    func chance(_ rate: Double) -> Bool { state.withLock { $0.chance(rate) } }

    func upTo(_ bound: Int) -> Int { bound <= 0 ? 0 : Int(next() % UInt64(bound + 1)) }

    func hex(_ length: Int) -> String {
        var text = ""
        while text.count < length { text += String(next(), radix: 16) }
        return String(text.prefix(length))
    }
}
