/// The life of an order. Written down once here; every change of status in Crest is one of these arrows:
///
/// ```
/// pending_payment ──pay──▶ paid
///        ├────────cancel──▶ cancelled ──refund──▶ refunded
///        └────────expire──▶ expired ────refund──▶ refunded
/// ```
///
/// `paid` and `refunded` are final; `cancelled` and `expired` are final for the stock, and move on
/// to `refunded` only when a payment arrived too late and its money went back.
extension Order {
    public enum Status: String, Sendable, Hashable, Codable, CaseIterable {
        case pendingPayment = "pending_payment"
        case paid
        case cancelled
        case expired
        case refunded

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
            case .refund: target = .refunded
            }
            if self == target { return self }
            let from: Set<Status> = event == .refund ? [.cancelled, .expired] : [.pendingPayment]
            guard from.contains(self) else {
                throw OrderError.notPending(current: self)
            }
            return target
        }
    }

    /// What can happen to an order.
    public enum Event: String, Sendable, Hashable, CaseIterable {
        case pay
        case cancel
        case expire
        /// The late payment of a cancelled or expired order was refunded.
        case refund
    }
}
