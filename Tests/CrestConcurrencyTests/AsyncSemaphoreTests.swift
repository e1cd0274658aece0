import CrestConcurrency
import Synchronization
import Testing

// Three minutes: the tests take milliseconds, but in a full CI run on two cores the pool's threads
// were seen busy elsewhere for over a minute at the start (a limit of one failed there).
@Suite("Async semaphore", .timeLimit(.minutes(3)))
struct AsyncSemaphoreTests {
    @Test("at most `limit` hold a place at once, however many ask; every one gets in")
    func bounded() async throws {
        let slots = AsyncSemaphore(limit: 3)
        let counts = Shared((holding: 0, most: 0, done: 0))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<50 {
                group.addTask {
                    try await slots.acquire()
                    counts.withLock {
                        $0.holding += 1
                        $0.most = max($0.most, $0.holding)
                    }
                    await Task.yield()
                    try await Task.sleep(for: .milliseconds(1))
                    counts.withLock {
                        $0.holding -= 1
                        $0.done += 1
                    }
                    slots.release()
                }
            }
            try await group.waitForAll()
        }
        let final = counts.withLock { $0 }
        #expect(final.done == 50 && final.holding == 0)
        #expect(final.most == 3, "at most 3 at once, and the 3 were used")
        #expect(slots.statistics.available == 3 && slots.statistics.waiting == 0)
    }

    @Test("waiters get in in the order they came")
    func firstComeFirstServed() async throws {
        let slots = AsyncSemaphore(limit: 1)
        try await slots.acquire()
        let order = Shared<[Int]>([])
        var waiters: [Task<Void, any Error>] = []
        for index in 0..<5 {
            waiters.append(
                Task {
                    try await slots.acquire()
                    order.withLock { $0.append(index) }
                    slots.release()
                })
            // Queued before the next one starts.
            while slots.statistics.waiting < index + 1 { try? await Task.sleep(for: .milliseconds(1)) }
        }
        slots.release()
        for waiter in waiters { try await waiter.value }
        #expect(order.withLock { $0 } == [0, 1, 2, 3, 4])
    }

    @Test("one that asks to go ahead gets the next place before those waiting; a cancelled one ahead gives it up")
    func ahead() async throws {
        let slots = AsyncSemaphore(limit: 1)
        try await slots.acquire()
        let order = Shared<[String]>([])
        func waiter(_ name: String, ahead: Bool = false) -> Task<Void, any Error> {
            Task {
                try await slots.acquire(ahead: ahead)
                order.withLock { $0.append(name) }
                slots.release()
            }
        }
        func queued(_ count: Int) async {
            while slots.statistics.waiting < count { try? await Task.sleep(for: .milliseconds(1)) }
        }
        var waiters = [waiter("job 1")]
        await queued(1)
        waiters.append(waiter("job 2"))
        await queued(2)
        let cancelledAhead = waiter("cancelled", ahead: true)
        await queued(3)
        cancelledAhead.cancel()
        await #expect(throws: CancellationError.self) { try await cancelledAhead.value }
        waiters.append(waiter("buyer 1", ahead: true))
        await queued(3)
        waiters.append(waiter("buyer 2", ahead: true))
        await queued(4)
        slots.release()
        for waiter in waiters { try await waiter.value }
        #expect(order.withLock { $0 } == ["buyer 1", "buyer 2", "job 1", "job 2"])
        #expect(slots.statistics.available == 1 && slots.statistics.waiting == 0)
    }

    @Test("a cancelled wait throws and gives up its place in the line; one cancelled before it asks never waits")
    func cancelled() async throws {
        let slots = AsyncSemaphore(limit: 1)
        try await slots.acquire()
        let first = Task { try await slots.acquire() }
        while slots.statistics.waiting < 1 { try? await Task.sleep(for: .milliseconds(1)) }
        let second = Task {
            try await slots.acquire()
            slots.release()
        }
        while slots.statistics.waiting < 2 { try? await Task.sleep(for: .milliseconds(1)) }
        first.cancel()
        await #expect(throws: CancellationError.self) { try await first.value }
        #expect(slots.statistics.waiting == 1)
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await slots.acquire()
        }
        await #expect(throws: CancellationError.self) { try await early.value }
        // The place goes to the second waiter, not to the cancelled one.
        slots.release()
        try await second.value
        #expect(slots.statistics.available == 1 && slots.statistics.waiting == 0)
    }
}

/// A value tasks share, under a lock.
private final class Shared<Value: Sendable>: Sendable {
    private let value: Mutex<Value>

    init(_ value: Value) { self.value = Mutex(value) }

    func withLock<T: Sendable>(_ body: (inout sending Value) -> sending T) -> T { value.withLock(body) }
}
