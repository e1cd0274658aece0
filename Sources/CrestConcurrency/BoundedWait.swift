import Synchronization

/// Runs `work` in a task of its own and waits for it at most `limit`: its result when it finished
/// in time (or its error), `nil` when it did not — it is then left running, unawaited, and should
/// it produce a value after all, `whenLate` gets it (to close a connection nobody will use).
///
/// For steps that must not hold their caller for ever: closing a connection to a server that
/// stopped answering, a library's close that waits for a reply it will not get, a connection's
/// start-up exchange with a server that accepted it and says nothing. The caller says what it
/// gave up on and goes on. Not for work whose effect matters: nothing tells the abandoned task to
/// stop.
///
/// ```swift
/// if try await boundedWait(atMost: .seconds(5), { await lane.close() }) == nil {
///     logger.error("the lane did not close within 5 s")
/// }
/// ```
package func boundedWait<Result: Sendable>(
    atMost limit: Duration, _ work: @escaping @Sendable () async throws -> Result,
    whenLate: (@Sendable (Result) async -> Void)? = nil
) async throws -> Result? {
    let first = FirstOutcome<Result>()
    return try await withCheckedThrowingContinuation { continuation in
        first.waiting(continuation)
        let timer = Task {
            // Cancelled once the work ended: its outcome is the answer, not this.
            guard (try? await Task.sleep(for: limit)) != nil else { return }
            _ = first.resume(.success(nil))
        }
        Task {
            let outcome: Swift.Result<Result?, any Error>
            do { outcome = .success(try await work()) } catch { outcome = .failure(error) }
            let delivered = first.resume(outcome)
            timer.cancel()
            if !delivered, case .success(let value?) = outcome { await whenLate?(value) }
        }
    }
}

/// The first of two outcomes resumes the waiter; the second is dropped.
private final class FirstOutcome<Result: Sendable>: Sendable {
    private let continuation = Mutex<CheckedContinuation<Result?, any Error>?>(nil)

    func waiting(_ waiter: CheckedContinuation<Result?, any Error>) {
        continuation.withLock { $0 = waiter }
    }

    /// Whether `outcome` was the first, the one the waiter got.
    func resume(_ outcome: Swift.Result<Result?, any Error>) -> Bool {
        let waiter = continuation.withLock { waiter in
            defer { waiter = nil }
            return waiter
        }
        waiter?.resume(with: outcome)
        return waiter != nil
    }
}
