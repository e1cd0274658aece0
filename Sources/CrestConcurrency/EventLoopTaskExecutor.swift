import NIOCore
import NIOPosix

/// A `TaskExecutor` that runs every job on one NIO event loop.
///
/// A task that prefers it (`withTaskExecutorPreference`, or a child task added with it as
/// `executorPreference`) runs on that loop's thread, and a continuation resumed there — an
/// answer read by the loop — resumes the task on the spot instead of through the global
/// executor. Used for:
/// - load generator workers, on their connection's loop (CrestLoad);
/// - a group committer's loop, on a thread of its own (``ownThread()``): when a commit returns,
///   it continues at once instead of queueing behind request handlers (CrestEngine).
///
/// An actor whose executor is a loop does not do the same: a continuation resumed from the loop
/// goes through the global executor first and only then hops back.
package final class EventLoopTaskExecutor: TaskExecutor {
    package let eventLoop: any EventLoop
    /// The one-thread group behind an executor made by ``ownThread()``.
    private let ownedGroup: MultiThreadedEventLoopGroup?

    package init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        ownedGroup = nil
    }

    private init(owning group: MultiThreadedEventLoopGroup) {
        eventLoop = group.next()
        ownedGroup = group
    }

    /// An executor with a thread of its own; ``shutdown()`` stops the thread once no task
    /// prefers it any more.
    package static func ownThread() -> EventLoopTaskExecutor {
        EventLoopTaskExecutor(owning: MultiThreadedEventLoopGroup(numberOfThreads: 1))
    }

    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        eventLoop.execute { job.runSynchronously(on: executor) }
    }

    /// Waits until `instant` on the loop's own timer.
    package func sleep(until instant: ContinuousClock.Instant) async {
        let delay = instant - .now
        guard delay > .zero else { return }
        await withCheckedContinuation { continuation in
            eventLoop.scheduleTask(in: TimeAmount(delay)) { continuation.resume() }
        }
    }

    /// Stops the thread of an executor made by ``ownThread()``; does nothing for a loop it was given.
    package func shutdown() async {
        try? await ownedGroup?.shutdownGracefully()
    }
}
