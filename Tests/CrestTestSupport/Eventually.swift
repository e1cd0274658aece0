/// Polls `condition` until it holds or `timeout` passed; returns whether it held. For tests that
/// wait on asynchronous work (jobs, expiry) without sleeping a fixed time.
public func eventually(
    timeout: Duration = .seconds(15), every interval: Duration = .milliseconds(20),
    _ condition: () async throws -> Bool
) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await condition() { return true }
        if ContinuousClock.now >= deadline { return false }
        try await Task.sleep(for: interval)
    }
}
