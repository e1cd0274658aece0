import CrestCore
import Foundation
import Testing

@Suite("The adjustable clock")
struct ClockTests {
    @Test("a sleep ends when an advance passes its deadline, made before or during the sleep")
    func advanceEndsSleeps() async throws {
        let clock = AdjustableClock()
        let started = ContinuousClock.now
        // A deadline fixed before the clock moved: the sleep starting after the move returns at once.
        let deadline = clock.now().addingTimeInterval(3600)
        clock.advance(by: .seconds(3601))
        try await clock.sleep(until: deadline)
        // A sleep already waiting ends when the clock moves past it.
        async let slept: Void = clock.sleep(for: .seconds(3600))
        while clock.sleeping == 0 { try await Task.sleep(for: .milliseconds(1)) }
        clock.advance(by: .seconds(3600))
        try await slept
        #expect(ContinuousClock.now - started < .seconds(60), "an hour of the clock, not of real time")
    }

    @Test("a cancelled sleep throws and leaves nothing waiting")
    func cancelledSleep() async throws {
        let clock = AdjustableClock()
        let sleeper = Task { try await clock.sleep(for: .seconds(3600)) }
        while clock.sleeping == 0 { try await Task.sleep(for: .milliseconds(1)) }
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        #expect(clock.sleeping == 0)
    }
}
