import Synchronization

/// Runs `work` in a task of its own and waits for it at most `limit`: its result when it finished
/// in time (or its error), `nil` when it did not — it is then left running, unawaited.
///
/// For the steps of a shutdown that must not hold a process for ever: closing a connection to a
/// server that stopped answering, or a library's close that waits for a reply it will not get.
/// The caller says which step it gave up on and goes on; what the step held is released when the
/// process exits. Not for work whose effect matters: nothing tells the abandoned task to stop.
///
/// ```swift
/// if try await boundedWait(atMost: .seconds(5), { await lane.close() }) == nil {
///     logger.error("the lane did not close within 5 s")
/// }
/// ```
package func boundedWait<Result: Sendable>(
    atMost limit: Duration, _ work: @escaping @Sendable () async throws -> Result
) async throws -> Result? {
    let first = FirstOutcome<Result>()
    return try await withCheckedThrowingContinuation { continuation in
        first.waiting(continuation)
        let timer = Task {
            try? await Task.sleep(for: limit)
            first.resume(.success(nil))
        }
        Task {
            let outcome: Swift.Result<Result?, any Error>
            do { outcome = .success(try await work()) } catch { outcome = .failure(error) }
            timer.cancel()
            first.resume(outcome)
        }
    }
}

/// The first of two outcomes resumes the waiter; the second is dropped.
private final class FirstOutcome<Result: Sendable>: Sendable {
    private let continuation = Mutex<CheckedContinuation<Result?, any Error>?>(nil)

    func waiting(_ waiter: CheckedContinuation<Result?, any Error>) {
        continuation.withLock { $0 = waiter }
    }

    func resume(_ outcome: Swift.Result<Result?, any Error>) {
        continuation.withLock { waiter in
            defer { waiter = nil }
            return waiter
        }?.resume(with: outcome)
    }
}
