import CrestConcurrency
import CrestCore
import Logging
import ServiceLifecycle
import Synchronization

/// Merges concurrent requests into batches and hands each batch to one `commit` call, then
/// answers every request with its own result — the group commit of DESIGN.md's write path.
///
/// A batch is whatever queued while the previous commit ran, capped at `maxBatchSize`. With a
/// non-zero `window`, a batch that would start with fewer than `lingerBelow` requests, while no
/// other batch is being committed, first waits up to that long for more — until `lingerBelow`
/// wait, so that clients who send again as soon as they are answered do not wait it out each
/// round. At a moderate rate each request would otherwise commit alone, with every hand-off and
/// sync of a commit to itself; under load the queue is long enough and nobody lingers. Nobody
/// waits in an unbounded queue: the queue is drained as fast as the store commits.
///
/// It is a `Service`: on graceful shutdown it stops taking new requests, commits every request
/// already queued, and returns.
package final class GroupCommitter<Item: Sendable, Output: Sendable>: Service, Sendable {
    package typealias Commit = @Sendable ([Item]) async throws -> [Output]

    private struct Waiting {
        var item: Item
        var waiter: Waiter

        /// A suspended task (`submit(_:)`), or a function called from the committer's thread
        /// (`submit(_:then:)`).
        enum Waiter {
            case task(CheckedContinuation<Output, any Error>)
            case callback(@Sendable (Result<Output, any Error>) -> Void)
        }

        func answer(_ result: Result<Output, any Error>) {
            switch waiter {
            case .task(let continuation): continuation.resume(with: result)
            case .callback(let answer): answer(result)
            }
        }
    }

    private struct State {
        var queue: [Waiting] = []
        var wakeUp: CheckedContinuation<Void, Never>?
        var shuttingDown = false
        /// Batches being committed now (at most `inFlight`).
        var running = 0
        /// The size of the batch most recently started.
        var lastStarted = 0
        /// The loop's linger under way, if it lingers (a late timer of an earlier one ends nothing).
        var lingering: UInt64?
        var lingers: UInt64 = 0

        /// Whether a batch may start now: something waits, a place is free, and — with a batch
        /// already in flight — as many wait as it holds (or shutdown began), so that two batches
        /// of about the same size alternate instead of one batch and a trickle of small ones.
        func mayStart(inFlight: Int) -> Bool {
            guard !queue.isEmpty, running < inFlight else { return false }
            return running == 0 || shuttingDown || queue.count >= lastStarted
        }
    }

    private let state = Mutex(State())
    private let commit: Commit
    private let window: Duration
    private let lingerBelow: Int
    private let maxBatchSize: Int
    private let inFlightLimit: (@Sendable () -> Int)?
    private let ownThread: Bool
    private let logger: Logger
    private let clock: any CrestClock

    /// With `ownThread`, the loop runs on a thread of its own (``EventLoopTaskExecutor/ownThread()``):
    /// when a commit returns, it continues at once instead of queueing behind the request handlers
    /// that share the cooperative pool. Otherwise it runs on the pool.
    /// `clock` times the linger of a non-zero `window`; `lingerBelow` (at most `maxBatchSize`,
    /// which it is by default: always linger) is the queue's length from which a batch starts at
    /// once. While `inFlight` says more than one (it is asked each time a batch could start), that
    /// many batches may be committed at once (`commit` is then called concurrently): the next
    /// starts while the last is committed, once as many requests wait as the last holds.
    package init(
        window: Duration, lingerBelow: Int? = nil, maxBatchSize: Int, inFlight: (@Sendable () -> Int)? = nil, ownThread: Bool = false,
        logger: Logger, clock: any CrestClock = SystemClock(), commit: @escaping Commit
    ) {
        precondition(maxBatchSize >= 1, "maxBatchSize must be at least 1")
        self.inFlightLimit = inFlight
        self.clock = clock
        self.window = window
        self.lingerBelow = min(lingerBelow ?? maxBatchSize, maxBatchSize)
        self.maxBatchSize = maxBatchSize
        self.ownThread = ownThread
        self.logger = logger
        self.commit = commit
    }

    /// Requests waiting for a batch (not counting the batch being committed).
    package var queuedCount: Int { state.withLock { $0.queue.count } }

    /// Queues `item` for the next batch and returns its result once that batch committed.
    /// Throws `UnavailableError` once shutdown began, and whatever `commit` threw for the batch.
    package func submit(_ item: Item) async throws -> Output {
        try await withCheckedThrowingContinuation { continuation in
            enqueue(Waiting(item: item, waiter: .task(continuation)))
        }
    }

    /// Queues `item` for the next batch without suspending: `answer` is called once with its
    /// result — from the committer's thread once its batch committed, or at once (on the caller's
    /// thread) with `ShutdownError` once shutdown began. For callers that are not tasks (a channel
    /// handler on an event loop); `answer` must be quick and must not block: every answer of the
    /// batch waits for it.
    package func submit(_ item: Item, then answer: @escaping @Sendable (Result<Output, any Error>) -> Void) {
        enqueue(Waiting(item: item, waiter: .callback(answer)))
    }

    private var inFlight: Int { max(1, inFlightLimit?() ?? 1) }

    private func enqueue(_ waiting: Waiting) {
        let inFlight = inFlight
        let outcome = state.withLock { state -> (accepted: Bool, wake: CheckedContinuation<Void, Never>?) in
            guard !state.shuttingDown else { return (false, nil) }
            state.queue.append(waiting)
            if state.lingering != nil {
                guard state.queue.count >= lingerBelow else { return (true, nil) }
            } else {
                guard state.mayStart(inFlight: inFlight) else { return (true, nil) }
            }
            let wake = state.wakeUp
            state.wakeUp = nil
            return (true, wake)
        }
        if outcome.accepted {
            outcome.wake?.resume()
        } else {
            waiting.answer(.failure(ShutdownError()))
        }
    }

    package func run() async throws {
        await withGracefulShutdownHandler {
            await drain()
        } onGracefulShutdown: {
            self.stopAccepting()
        }
        logger.debug("group committer stopped")
    }

    /// Commits batches until `stopAccepting()` was called and the queue is empty. For owners that
    /// decide themselves when to stop (`run()` stops on graceful shutdown).
    func drain() async {
        guard ownThread else { return await commitUntilStopped() }
        let thread = EventLoopTaskExecutor.ownThread()
        await withTaskExecutorPreference(thread) { await commitUntilStopped() }
        await thread.shutdown()
    }

    /// Cancellation (a service group cancelled because another service failed, e.g. the server
    /// could not bind its port) stops it as graceful shutdown does: what is queued is committed
    /// and nothing more is taken. Without this an idle committer waited for work forever, and the
    /// process with it.
    private func commitUntilStopped() async {
        await withTaskCancellationHandler {
            guard inFlightLimit != nil else {
                while let batch = await nextBatch() {
                    await process(batch)
                    finished()
                }
                return
            }
            await withDiscardingTaskGroup { group in
                while let batch = await nextBatch() {
                    group.addTask {
                        await self.process(batch)
                        self.finished()
                    }
                }
            }
        } onCancel: {
            self.stopAccepting()
        }
    }

    /// A batch was answered: its place is free.
    private func finished() {
        let inFlight = inFlight
        let wake = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.running -= 1
            guard state.mayStart(inFlight: inFlight) || (state.shuttingDown && state.queue.isEmpty) else { return nil }
            let wake = state.wakeUp
            state.wakeUp = nil
            return wake
        }
        wake?.resume()
    }

    /// From now on `submit` throws `ShutdownError`; what is queued is still committed.
    func stopAccepting() {
        let wake = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.shuttingDown = true
            let wake = state.wakeUp
            state.wakeUp = nil
            return wake
        }
        wake?.resume()
    }

    /// The next batch, or `nil` once shutting down with nothing left to commit.
    private func nextBatch() async -> [Waiting]? {
        while true {
            let inFlight = inFlight
            let step = state.withLock { state -> BatchStep in
                if state.queue.isEmpty { return state.shuttingDown ? .stop : .wait }
                guard state.mayStart(inFlight: inFlight) else { return .wait }
                if window > .zero, state.running == 0, state.queue.count < lingerBelow, !state.shuttingDown {
                    return .linger
                }
                return .take
            }
            switch step {
            case .stop:
                return nil
            case .wait:
                await withCheckedContinuation { continuation in
                    let resumeNow = state.withLock { state -> Bool in
                        if state.mayStart(inFlight: inFlight) || (state.shuttingDown && state.queue.isEmpty) { return true }
                        state.wakeUp = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            case .linger:
                await linger()
                return takeBatch()
            case .take:
                return takeBatch()
            }
        }
    }

    /// Waits until `window` has passed, `lingerBelow` requests wait, or shutdown began.
    private func linger() async {
        let id = state.withLock { state in
            state.lingers += 1
            state.lingering = state.lingers
            return state.lingers
        }
        let timer = Task {
            try? await clock.sleep(for: window)
            endLinger(id)
        }
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLock { state -> Bool in
                if state.lingering != id || state.queue.count >= lingerBelow || state.shuttingDown { return true }
                state.wakeUp = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
        state.withLock { $0.lingering = nil }
        timer.cancel()
    }

    /// The window of linger `id` has passed: the loop takes what waits.
    private func endLinger(_ id: UInt64) {
        let wake = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.lingering == id else { return nil }
            state.lingering = nil
            let wake = state.wakeUp
            state.wakeUp = nil
            return wake
        }
        wake?.resume()
    }

    private func takeBatch() -> [Waiting] {
        state.withLock { state in
            let count = min(state.queue.count, maxBatchSize)
            let batch = Array(state.queue.prefix(count))
            state.queue.removeFirst(count)
            state.running += 1
            state.lastStarted = count
            return batch
        }
    }

    private func process(_ batch: [Waiting]) async {
        do {
            // A closure, not `\.item`: a key path into this generic type is made at run time, per batch.
            let outputs = try await commit(batch.map { $0.item })
            precondition(outputs.count == batch.count, "commit must return one output per item")
            for (waiting, output) in zip(batch, outputs) {
                waiting.answer(.success(output))
            }
        } catch {
            for waiting in batch {
                waiting.answer(.failure(error))
            }
        }
    }

    private enum BatchStep {
        case take
        case wait
        case linger
        case stop
    }

    /// Thrown to requests that arrive after shutdown began.
    package struct ShutdownError: Error {}
}
