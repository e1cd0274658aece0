import CrestCore
import Foundation

/// An order after a transition, what the transition did, and its sale's counters.
public struct TransitionResult: Sendable {
    public enum Change: Sendable, Hashable {
        /// The order took the arrow: status, stock and event written.
        case applied
        /// The order already had the target status (a repeated event); nothing written.
        case repeated
        /// No arrow from the order's status; nothing changed (but a refused `pay` flags the order).
        case refused
    }

    public var order: Order
    public var change: Change
    public var counters: CounterSnapshot

    public init(order: Order, change: Change, counters: CounterSnapshot) {
        self.order = order
        self.change = change
        self.counters = counters
    }
}

/// One order and the event to apply to it.
public struct TransitionRequest: Sendable, Hashable {
    public var orderID: OrderID
    public var event: Order.Event

    public init(orderID: OrderID, event: Order.Event) {
        self.orderID = orderID
        self.event = event
    }
}
