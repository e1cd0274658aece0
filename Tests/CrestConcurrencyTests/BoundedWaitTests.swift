import CrestConcurrency
import Synchronization
import Testing

@Suite("Bounded wait", .timeLimit(.minutes(1)))
struct BoundedWaitTests {
    @Test("work that finishes in time is waited for: its result, or its error")
    func finishes() async throws {
        let answer = try await boundedWait(atMost: .seconds(30)) {
            try await Task.sleep(for: .milliseconds(20))
            return 42
        }
        #expect(answer == 42)
        // Many at once: the limit's timer, cancelled as each one ends, never answers for it.
        let answered = try await withThrowingTaskGroup(of: Bool.self) { group in
            for round in 0..<2_000 {
                group.addTask { try await boundedWait(atMost: .seconds(600), { round }) == round }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(answered == 2_000)
        await #expect(throws: CancellationError.self) {
            try await boundedWait(atMost: .seconds(30)) { throw CancellationError() }
        }
    }

    @Test("work that does not finish is given up at the limit and left running")
    func givesUp() async throws {
        let (awaited, arrival) = AsyncStream.makeStream(of: Void.self)
        let ended = Mutex(false)
        let start = ContinuousClock.now
        let finished: Void? = try await boundedWait(atMost: .milliseconds(100)) {
            for await _ in awaited {}
            ended.withLock { $0 = true }
        }
        #expect(finished == nil)
        #expect(ContinuousClock.now - start >= .milliseconds(100))
        #expect(ContinuousClock.now - start < .seconds(30))
        #expect(!ended.withLock { $0 })
        // Left running, not cancelled: it ends when what it waited for comes.
        arrival.finish()
        while !ended.withLock({ $0 }) { try? await Task.sleep(for: .milliseconds(5)) }
    }

    @Test("a value that comes after the limit goes to `whenLate`, not to the caller")
    func lateValue() async throws {
        let late = Mutex<Int?>(nil)
        let answer = try await boundedWait(
            atMost: .milliseconds(50),
            {
                try await Task.sleep(for: .milliseconds(300))
                return 7
            },
            whenLate: { value in late.withLock { $0 = value } })
        #expect(answer == nil)
        let start = ContinuousClock.now
        while late.withLock({ $0 }) == nil, ContinuousClock.now - start < .seconds(30) {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(late.withLock { $0 } == 7)
        // In time, `whenLate` is not called.
        let onTime = Mutex(false)
        #expect(try await boundedWait(atMost: .seconds(30), { 8 }, whenLate: { _ in onTime.withLock { $0 = true } }) == 8)
        #expect(!onTime.withLock { $0 })
    }
}
