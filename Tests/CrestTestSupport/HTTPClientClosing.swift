import AsyncHTTPClient

extension HTTPClient {
    /// `body`'s result, with this client shut down after it — also when `body` throws. A client
    /// dropped without `shutdown()` stops the whole test process (AsyncHTTPClient asserts so in
    /// its deinit in debug builds): one test failing half way would end every other test with it.
    public func closing<T: Sendable>(_ body: (HTTPClient) async throws -> T) async throws -> T {
        let result: T
        do {
            result = try await body(self)
        } catch {
            try? await shutdown()
            throw error
        }
        try await shutdown()
        return result
    }
}
