import Hummingbird
import Synchronization

/// A webhook receiver that answers each `POST /hook` after a pause (or once `release()` is called)
/// and remembers how many were in at once — to see how many deliveries a sender has out.
public final class SlowReceiver: Sendable {
    public let pause: Duration
    private let counts = Mutex((now: 0, most: 0, received: 0, released: false))

    public init(pause: Duration) { self.pause = pause }

    /// The most requests that were in at once.
    public var most: Int { counts.withLock { $0.most } }
    public var received: Int { counts.withLock { $0.received } }

    /// Answers the requests held now and every later one at once.
    public func release() { counts.withLock { $0.released = true } }

    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.post("/hook") { _, _ -> HTTPResponse.Status in
            self.counts.withLock { counts in
                counts.now += 1
                counts.received += 1
                counts.most = max(counts.most, counts.now)
            }
            let end = ContinuousClock.now + self.pause
            while ContinuousClock.now < end, !self.counts.withLock({ $0.released }) {
                try? await Task.sleep(for: min(.milliseconds(10), end - ContinuousClock.now))
            }
            self.counts.withLock { $0.now -= 1 }
            return .ok
        }
        return router
    }
}
