import CrestConcurrency
import Testing

/// Bounds are generous upper limits (the suite shares two cores: in a full CI run a 50 ms wait
/// once came back after 10.3 s, its task waiting for a thread of the pool) — far below the 600 s
/// waits they tell apart; the lower ones are exact.
@Suite("Shared deadlines", .timeLimit(.minutes(1)))
struct SharedDeadlinesTests {
    @Test("a wait returns at its deadline, not before")
    func returnsAtDeadline() async {
        let deadlines = SharedDeadlines()
        let start = ContinuousClock.now
        await deadlines.wait(until: start + .milliseconds(50))
        #expect(ContinuousClock.now - start >= .milliseconds(50))
        #expect(ContinuousClock.now - start < .seconds(30))
        #expect(deadlines.statistics.waiting == 0)
    }

    @Test("a cancelled wait returns at once, whether cancelled before or while it waits")
    func cancelled() async {
        let deadlines = SharedDeadlines()
        let start = ContinuousClock.now
        let waiting = Task { await deadlines.wait(until: .now + .seconds(600)) }
        let before = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            await deadlines.wait(until: .now + .seconds(600))
        }
        waiting.cancel()
        await waiting.value
        await before.value
        #expect(ContinuousClock.now - start < .seconds(30))
        #expect(deadlines.statistics.waiting == 0)
    }

    @Test("an earlier deadline that comes after a later one is not held behind it")
    func earlierAfterLater() async throws {
        let deadlines = SharedDeadlines()
        let long = Task { await deadlines.wait(until: .now + .seconds(600)) }
        // The long wait registered first: the timer sleeps for it.
        while deadlines.statistics.waiting == 0 { try? await Task.sleep(for: .milliseconds(1)) }
        let start = ContinuousClock.now
        await deadlines.wait(until: start + .milliseconds(50))
        #expect(ContinuousClock.now - start >= .milliseconds(50))
        #expect(ContinuousClock.now - start < .seconds(30))
        #expect(deadlines.statistics.waiting == 1, "the long wait goes on")
        long.cancel()
        await long.value
    }

    @Test("waits with deadlines in any order each return at their own")
    func manyInAnyOrder() async {
        let deadlines = SharedDeadlines()
        let start = ContinuousClock.now
        let offsets = (0..<200).map { _ in Int.random(in: 0...300) }
        let early = await withTaskGroup(of: Bool.self) { group in
            for offset in offsets {
                group.addTask {
                    let deadline = start + .milliseconds(offset)
                    await deadlines.wait(until: deadline)
                    return ContinuousClock.now < deadline
                }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(early == 0)
        #expect(ContinuousClock.now - start < .seconds(30))
        #expect(deadlines.statistics.waiting == 0)
    }

    @Test("finished waits do not pile up behind an earlier one still waited for")
    func finishedWaitsAreDropped() async {
        let deadlines = SharedDeadlines()
        let long = Task { await deadlines.wait(until: .now + .seconds(300)) }
        while deadlines.statistics.waiting == 0 { try? await Task.sleep(for: .milliseconds(1)) }
        // Later deadlines than the one the timer sleeps for, each finished at once (as a job that
        // completes in milliseconds under a 30 s timeout): nothing pops them until it wakes. All
        // from one cancelled task, so that the test needs no trip through the task pool per wait:
        // with a task each, a CPU-heavy test beside it on two cores once made 10,000 trips take
        // more than the suite's minute (a thread dump showed the pool busy, nothing blocked).
        let shorts = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            for _ in 0..<10_000 { await deadlines.wait(until: .now + .seconds(600)) }
        }
        await shorts.value
        #expect(deadlines.statistics.waiting == 1)
        #expect(deadlines.statistics.queued < 2_000, "\(deadlines.statistics)")
        long.cancel()
        await long.value
    }
}
