/// Polls `condition` until it holds or `timeout` passed; returns whether it held. For tests that
/// wait on asynchronous work (jobs, expiry) without sleeping a fixed time. The default bounds a
/// wait on a loaded 2-core CI machine running the whole suite at once (work that takes
/// milliseconds alone was seen to take over 15 s there); a condition that holds returns at once.
public func eventually(
    timeout: Duration = .seconds(60), every interval: Duration = .milliseconds(20),
    _ condition: () async throws -> Bool
) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await condition() { return true }
        if ContinuousClock.now >= deadline { return false }
        try await Task.sleep(for: interval)
    }
}
