import Synchronization

/// Counts of what a `JobRunner` did, for tests to wait on an event — "the lease was extended",
/// "an outcome was written" — instead of sleeping for the time it should take (River's
/// `TestSignals`). Cheap enough to count always: one atomic add per event.
///
/// ```swift
/// let before = runner.signals.leaseExtensions
/// clock.advance(by: .seconds(4))
/// try await eventually { runner.signals.leaseExtensions > before }
/// ```
package final class JobRunnerSignals: Sendable {
    private let rounds = Atomic<Int>(0)
    private let claimed = Atomic<Int>(0)
    private let extended = Atomic<Int>(0)
    private let recorded = Atomic<Int>(0)
    private let slept = Atomic<Int>(0)

    /// Claims made (each a store transaction that also rescues jobs whose lease ran out), whether
    /// they found a job or not.
    package var claims: Int { rounds.load(ordering: .relaxed) }
    /// Jobs handed to workers by claims so far.
    package var jobsClaimed: Int { claimed.load(ordering: .relaxed) }
    /// Times the leases of running jobs were extended.
    package var leaseExtensions: Int { extended.load(ordering: .relaxed) }
    /// Run outcomes written to the store.
    package var outcomesRecorded: Int { recorded.load(ordering: .relaxed) }
    /// Times the claim loop went to sleep with nothing more due, its wake-up time fixed.
    package var idleWaits: Int { slept.load(ordering: .relaxed) }

    func claimed(_ count: Int) {
        claimed.add(count, ordering: .relaxed)
        rounds.add(1, ordering: .relaxed)
    }
    func extendedLeases() { extended.add(1, ordering: .relaxed) }
    func recordedOutcome() { recorded.add(1, ordering: .relaxed) }
    func sleepsIdle() { slept.add(1, ordering: .relaxed) }
}
