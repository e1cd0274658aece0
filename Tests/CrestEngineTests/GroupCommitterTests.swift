import CrestCore
import CrestTestSupport
import Foundation
import Logging
import Synchronization
import Testing

@testable import CrestEngine

@Suite("Group committer")
struct GroupCommitterTests {
    /// The name of the thread running the caller (Linux).
    static func threadName() -> String {
        let name = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? "?"
        return name.trimmingCharacters(in: .newlines)
    }

    @Test(
        "with a thread of its own: every batch commits there, each request gets its own answer, and shutdown commits what queued, then stops"
    )
    func ownThreadCommitsAndStops() async throws {
        let threads = Mutex<Set<String>>([])
        let committer = GroupCommitter<Int, Int>(window: .zero, maxBatchSize: 8, ownThread: true, logger: Logger(label: "test")) {
            items in
            threads.withLock { _ = $0.insert(Self.threadName()) }
            try await Task.sleep(for: .milliseconds(1))
            threads.withLock { _ = $0.insert(Self.threadName()) }
            return items.map { $0 * 2 }
        }
        let draining = Task { await committer.drain() }
        let answers = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for item in 0..<100 { group.addTask { (item, try await committer.submit(item)) } }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        #expect(answers.count == 100 && answers.allSatisfy { $0.value == $0.key * 2 })
        let late = Task { try await committer.submit(1_000) }
        committer.stopAccepting()
        await draining.value
        // The request submitted just before shutdown was either committed or refused, never left waiting.
        switch await late.result {
        case .success(let answer): #expect(answer == 2_000)
        case .failure(let error): #expect(error is GroupCommitter<Int, Int>.ShutdownError)
        }
        let seen = threads.withLock { $0 }
        #expect(seen.count == 1, "batches committed on \(seen)")
        #expect(seen.allSatisfy { $0.hasPrefix("NIO-ELT") }, "batches committed on \(seen)")
        await #expect(throws: GroupCommitter<Int, Int>.ShutdownError.self) { try await committer.submit(1) }
    }

    @Test(
        "two batches in flight when the store asks for them: the next starts while the last is committed, once as many wait as it holds; one at a time when it does not"
    )
    func secondBatchInFlight() async throws {
        for overlapping in [true, false] {
            let started = Mutex<[[Int]]>([])
            let (released, release) = AsyncStream.makeStream(of: Void.self)
            let committer = GroupCommitter<Int, Int>(
                window: .zero, maxBatchSize: 8, inFlight: { overlapping ? 2 : 1 }, logger: Logger(label: "test")
            ) { items in
                started.withLock { $0.append(items.sorted()) }
                // The first batch is held until the test lets it go.
                if items.contains(1) { for await _ in released { break } }
                return items
            }
            let first = [1, 2].map { item in Task { try await committer.submit(item) } }
            #expect(try await eventually(timeout: .seconds(30)) { committer.queuedCount == 2 })
            let draining = Task { await committer.drain() }
            #expect(try await eventually(timeout: .seconds(30)) { started.withLock { $0 } == [[1, 2]] })
            // 3 alone waits: fewer than the batch in flight holds.
            let third = Task { try await committer.submit(3) }
            #expect(try await eventually(timeout: .seconds(30)) { committer.queuedCount == 1 })
            try await Task.sleep(for: .milliseconds(50))
            #expect(started.withLock { $0 } == [[1, 2]])
            let fourth = Task { try await committer.submit(4) }
            if overlapping {
                #expect(try await eventually(timeout: .seconds(60)) { started.withLock { $0.count } == 2 })
            } else {
                try await Task.sleep(for: .milliseconds(200))
                #expect(started.withLock { $0 } == [[1, 2]], "one batch at a time")
            }
            release.yield()
            for (task, item) in zip(first + [third, fourth], 1...4) { #expect(try await task.value == item) }
            #expect(started.withLock { $0 } == [[1, 2], [3, 4]])
            committer.stopAccepting()
            await draining.value
        }
    }

    @Test(
        "with a window: a batch that would start with fewer than lingerBelow waits for more, until the window ends or that many wait; one that would start with as many starts at once"
    )
    func lingersOnlyBelowItsThreshold() async throws {
        let clock = AdjustableClock()
        let started = Mutex<[[Int]]>([])
        let committer = GroupCommitter<Int, Int>(
            window: .seconds(3600), lingerBelow: 3, maxBatchSize: 8, logger: Logger(label: "test"), clock: clock
        ) { items in
            started.withLock { $0.append(items.sorted()) }
            return items
        }
        // Three wait before the loop first looks: as many as the threshold, so no linger.
        let busy = [1, 2, 3].map { item in Task { try await committer.submit(item) } }
        #expect(try await eventually(timeout: .seconds(30)) { committer.queuedCount == 3 })
        let draining = Task { await committer.drain() }
        let atOnce = try await eventually(timeout: .seconds(30)) { started.withLock { $0.count } == 1 }
        #expect(atOnce, "three waiting, as many as the threshold: the batch starts without its window")
        if !atOnce { clock.advance(by: .seconds(3600)) }  // so that a failure ends instead of hanging
        for (task, item) in zip(busy, 1...3) { #expect(try await task.value == item) }
        #expect(started.withLock { $0 } == [[1, 2, 3]])
        // One alone: it lingers for the window (an hour of the test's clock), and one that comes
        // meanwhile joins its batch.
        let alone = Task { try await committer.submit(4) }
        #expect(try await eventually(timeout: .seconds(30)) { clock.sleeping == 1 })
        let joining = Task { try await committer.submit(5) }
        #expect(try await eventually(timeout: .seconds(30)) { committer.queuedCount == 2 })
        try await Task.sleep(for: .milliseconds(50))
        #expect(started.withLock { $0.count } == 1, "nothing commits before the window ends")
        clock.advance(by: .seconds(3600))
        #expect(try await alone.value == 4)
        #expect(try await joining.value == 5)
        #expect(started.withLock { $0 } == [[1, 2, 3], [4, 5]])
        // One alone lingers again, and its batch starts as soon as the threshold's count waits,
        // without its window's end.
        let lingering = Task { try await committer.submit(6) }
        #expect(try await eventually(timeout: .seconds(30)) { clock.sleeping == 1 })
        let more = [7, 8].map { item in Task { try await committer.submit(item) } }
        let early = try await eventually(timeout: .seconds(30)) { started.withLock { $0.count } == 3 }
        #expect(early, "three waiting end the linger")
        if !early { clock.advance(by: .seconds(3600)) }
        for (task, item) in zip([lingering] + more, 6...8) { #expect(try await task.value == item) }
        #expect(started.withLock { $0 } == [[1, 2, 3], [4, 5], [6, 7, 8]])
        committer.stopAccepting()
        await draining.value
    }

    @Test(
        "a caller that is not a task submits with a function: called once with its own answer, in the same batches as the tasks'; after shutdown at once with ShutdownError"
    )
    func callbackSubmissions() async throws {
        let committer = GroupCommitter<Int, Int>(window: .zero, maxBatchSize: 8, logger: Logger(label: "test")) { items in
            items.map { $0 * 2 }
        }
        let draining = Task { await committer.drain() }
        let (answers, answered) = AsyncStream.makeStream(of: (Int, Result<Int, any Error>).self)
        for item in 0..<50 { committer.submit(item) { answered.yield((item, $0)) } }
        let fromTask = try await committer.submit(100)
        var seen: [Int: Int] = [:]
        for await (item, answer) in answers {
            seen[item, default: 0] += 1
            #expect(try answer.get() == item * 2)
            if seen.count == 50 { break }
        }
        #expect(fromTask == 200 && seen.count == 50 && seen.values.allSatisfy { $0 == 1 })
        committer.stopAccepting()
        await draining.value
        let late = Mutex<Result<Int, any Error>?>(nil)
        committer.submit(1) { answer in late.withLock { $0 = answer } }
        let refused = try #require(late.withLock { $0 }, "answered at once, on the caller's thread")
        #expect(throws: GroupCommitter<Int, Int>.ShutdownError.self) { try refused.get() }
    }

    @Test("cancelled while idle (its service group cancelled: the server could not bind), it returns and refuses new requests")
    func cancelledWhileIdleReturns() async throws {
        for ownThread in [false, true] {
            let committer = GroupCommitter<Int, Int>(
                window: .zero, maxBatchSize: 8, ownThread: ownThread, logger: Logger(label: "test")
            ) { $0 }
            let running = Task { try await committer.run() }
            #expect(try await committer.submit(1) == 1, "it commits before the cancellation")
            let finished = Mutex(false)
            // Unstructured on purpose: a committer that ignores cancellation must fail the test, not hang it.
            Task {
                _ = await running.result
                finished.withLock { $0 = true }
            }
            running.cancel()
            let returned = try await eventually(timeout: .seconds(60)) { finished.withLock { $0 } }
            #expect(returned, "ownThread \(ownThread): still waiting for work after cancellation")
            await #expect(throws: GroupCommitter<Int, Int>.ShutdownError.self) { try await committer.submit(2) }
        }
    }
}
