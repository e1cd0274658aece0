import NIOCore
import Synchronization

/// Work for an event loop's channels posted from other threads — the answers of attempts placed in
/// the channel, handed back by the write path (`ChannelOrders`) — run by the loop **between two of
/// its reads**, not only after its turn.
///
/// A task given to `EventLoop.execute` runs once the loop has served every event of its turn, and
/// in a crowd a turn serves hundreds of ready connections: ~28 ms with 1,500 busy connections on
/// two loops (RESULTS.md, "One watch for the write path's queue"). An admitted order's answer,
/// ready when its batch commits, waited for the rest of that turn. A loop's channels each look at
/// the mailbox as they read (`runWaiting()`: one relaxed atomic load when it is empty), so the
/// answers go out with the next connection the loop reads; one `execute` per mailbox filled runs
/// them too when no read comes first (an idle loop).
final class LoopMailbox: Sendable {
    private let eventLoop: any EventLoop
    private let waiting = Mutex<[@Sendable () -> Void]>([])
    /// How many wait: read without the lock, to look cheaply.
    private let count = Atomic<Int>(0)
    /// The loop is running the mailbox's work: work that reads (an answer lets its connection's
    /// parked requests go on) does not start the mailbox again.
    private let running: NIOLoopBoundBox<Bool>

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        self.running = NIOLoopBoundBox(false, eventLoop: eventLoop)
    }

    /// Queues `work` to run on the loop, at its next read or its next task, whichever comes first.
    /// From any thread.
    func post(_ work: @escaping @Sendable () -> Void) {
        let first = waiting.withLock { waiting in
            waiting.append(work)
            count.store(waiting.count, ordering: .relaxed)
            return waiting.count == 1
        }
        if first { eventLoop.execute { self.runWaiting() } }
    }

    /// Runs what waits, in the order posted. On the loop.
    func runWaiting() {
        guard count.load(ordering: .relaxed) > 0, !running.value else { return }
        running.value = true
        defer { running.value = false }
        while true {
            let work = waiting.withLock { waiting in
                var taken: [@Sendable () -> Void] = []
                swap(&taken, &waiting)
                count.store(0, ordering: .relaxed)
                return taken
            }
            if work.isEmpty { return }
            for run in work { run() }
        }
    }
}

/// One mailbox per event loop of a listener's connections, made the first time a connection of
/// that loop asks.
final class LoopMailboxes: Sendable {
    private let mailboxes = Mutex<[ObjectIdentifier: LoopMailbox]>([:])

    func mailbox(for eventLoop: any EventLoop) -> LoopMailbox {
        mailboxes.withLock { mailboxes in
            if let mailbox = mailboxes[ObjectIdentifier(eventLoop)] { return mailbox }
            let mailbox = LoopMailbox(eventLoop: eventLoop)
            mailboxes[ObjectIdentifier(eventLoop)] = mailbox
            return mailbox
        }
    }
}
