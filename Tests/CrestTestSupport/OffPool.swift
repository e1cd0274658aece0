import Foundation

/// Runs `work`, which blocks (waits for a process, runs a command-line tool), on a thread of its
/// own — neither on Swift's concurrency pool nor on Dispatch's global queues.
///
/// Both pools have about one thread per core (two on the CI machine) and every test of the process
/// shares them: the concurrency pool runs the tests' tasks, the global queues run GRDB's database
/// work. A test that blocked their threads for seconds (a node's graceful stop, `pg_ctl start -w`,
/// the deploy script) stalled every other test: the job runner's tests saw a job start ten
/// seconds late and a finished job stay `running` for fifteen.
public func offPool<T: Sendable, Failure: Error>(_ work: @escaping @Sendable () throws(Failure) -> T) async throws(Failure) -> T {
    let result: Result<T, Failure> = await withCheckedContinuation { continuation in
        let thread = Thread { continuation.resume(returning: Result { () throws(Failure) -> T in try work() }) }
        thread.name = "crest-test-blocking"
        thread.start()
    }
    return try result.get()
}
