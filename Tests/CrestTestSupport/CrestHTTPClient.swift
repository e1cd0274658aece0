import AsyncHTTPClient
import NIOCore

extension HTTPClient {
    /// The tests' client for calls to a Crest server (or another of the project's servers). Its
    /// pool forgets a connection left idle for 5 s, before the server closes it: Crest closes a new
    /// connection that sends no request within 10 s and a kept-alive one idle for 60 s, and
    /// `HTTPClient.shared` keeps an idle connection for 10 minutes. A request the pool hands to a
    /// connection the server is closing at that moment fails without an answer
    /// (`remoteConnectionClosed`, a reset) — seen in a loaded full suite, where a connection the
    /// pool opened for a request that another connection served first sat idle until the server's
    /// 10 s.
    public static let crest: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.idleTimeout = crestIdleTimeout
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// How long the tests' clients keep an idle connection to a Crest server: below its 10 s for a
    /// new connection's first request (see `crest`).
    public static let crestIdleTimeout: TimeAmount = .seconds(5)
}
