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
}
