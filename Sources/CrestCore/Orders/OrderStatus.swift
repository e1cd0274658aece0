/// The life of an order. Written down once here; every change of status in Crest is one of these arrows:
///
/// ```
/// pending_payment ──pay──▶ paid
///        ├────────cancel──▶ cancelled
///        └────────expire──▶ expired
/// ```
///
/// `paid`, `cancelled` and `expired` are final.
extension Order {
    public enum Status: String, Sendable, Hashable, Codable, CaseIterable {
        case pendingPayment = "pending_payment"
        case paid
        case cancelled
        case expired

        /// A live order counts against the buyer's limit and holds stock (reserved or sold).
        public var isLive: Bool { self == .pendingPayment || self == .paid }

        public var isFinal: Bool { self != .pendingPayment }

        /// The status after `event`, or the reason the arrow does not exist.
        ///
        /// Repeating the event that led to the current status is not an error: it returns the same
        /// status, so retried requests and redelivered events are harmless.
        public func applying(_ event: Event) throws(OrderError) -> Status {
            let target: Status
            switch event {
            case .pay: target = .paid
            case .cancel: target = .cancelled
            case .expire: target = .expired
            }
            if self == target { return self }
            guard self == .pendingPayment else {
                throw OrderError.notPending(current: self)
            }
            return target
        }
    }

    /// What can happen to an order.
    public enum Event: String, Sendable, Hashable {
        case pay
        case cancel
        case expire
    }
}
