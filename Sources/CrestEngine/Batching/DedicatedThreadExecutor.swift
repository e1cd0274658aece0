import NIOCore
import NIOPosix

/// A `TaskExecutor` with a thread of its own (a one-thread NIO event loop).
///
/// A group committer's loop runs on one: when a commit returns, the committer continues at once
/// on its own thread instead of queueing behind the request handlers that share the cooperative
/// pool (two threads on a two-core machine) — that wait would add to every request of the batch.
final class DedicatedThreadExecutor: TaskExecutor {
    private let group: MultiThreadedEventLoopGroup
    private let loop: any EventLoop

    init() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        loop = group.next()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        loop.execute { job.runSynchronously(on: executor) }
    }

    /// Stops the thread; call it once no task prefers this executor any more.
    func shutdown() async {
        try? await group.shutdownGracefully()
    }
}
