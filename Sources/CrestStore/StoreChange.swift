import CrestCore
import Foundation

/// A change announced to every process that shares a store.
public enum StoreChange: Sendable, Hashable {
    /// Jobs were enqueued; the earliest is due at this time.
    case jobsDue(at: Date)
    /// Units of this sale went back to `available` (an order was cancelled or expired).
    case stockReleased(SaleID)
    /// Announcements may have been missed (the connection that hears them was lost): whatever the
    /// listener keeps in memory should be read again.
    case resynchronize
}
