import CrestCore
import Foundation
import GRDB

extension SQLiteStore {
    public func recordPayments(_ observations: [PaymentObservation], at now: Date) async throws
        -> [Result<PaymentRecord, PaymentRecordFailure>]
    {
        try await pool.write { db in
            try observations.map { try Self.record($0, in: db, at: now) }
        }
    }

    /// One observation inside the caller's transaction. Its checks come before its first write, so
    /// a refused observation leaves nothing behind.
    private static func record(_ observation: PaymentObservation, in db: Database, at now: Date) throws
        -> Result<PaymentRecord, PaymentRecordFailure>
    {
        let orderID = observation.orderID
        guard var order = try Self.fetchOrder(db, id: orderID) else { return .failure(.orderNotFound) }
        let observed = observation.payment
        if let known = order.payment, known.id != observed.id {
            return .failure(.mismatch(PaymentMismatchError(orderID: orderID, known: known.id, observed: observed.id)))
        }
        if let eventID = observation.eventID {
            try db.cachedStatement(
                sql: "INSERT INTO provider_events (id, order_id, received_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
            ).execute(arguments: [eventID, orderID.description, SQLiteRows.millis(now)])
            if db.changesCount == 0 {
                return .success(PaymentRecord(order: order, duplicate: true, transition: nil, refundEnqueued: false))
            }
        }
        let previous = order.payment?.status
        let status = previous?.merged(with: observed.status) ?? observed.status
        let payment = OrderPayment(id: observed.id, status: status, payURL: observed.payURL ?? order.payment?.payURL)
        if payment != order.payment {
            try db.cachedStatement(sql: "UPDATE orders SET payment_id = ?, payment_status = ?, pay_url = ? WHERE id = ?")
                .execute(arguments: [payment.id, payment.status.rawValue, payment.payURL, orderID.description])
            order.payment = payment
        }
        var transition: TransitionResult?
        var refundEnqueued = false
        let newlySucceeded = status == .succeeded && previous != .succeeded && previous != .refunded
        if newlySucceeded || (status == .refunded && previous == nil) {
            switch order.status {
            case .pendingPayment where status == .succeeded:
                transition = try Self.apply(.pay, to: order, in: db, at: now)
            case .cancelled, .expired:
                // Money arrived for an order that gave its stock back: flag it, send it back.
                let refused = try Self.apply(.pay, to: order, in: db, at: now)
                order = refused.order
                if status == .succeeded {
                    refundEnqueued = !(try SQLiteJobs.insert(db, PaymentJobs.refund(of: orderID), at: now).duplicate)
                }
            case .pendingPayment, .paid, .refunded:
                break
            }
        }
        if status == .refunded, previous != .refunded, order.status == .cancelled || order.status == .expired {
            transition = try Self.apply(.refund, to: order, in: db, at: now)
        }
        return .success(
            PaymentRecord(
                order: transition?.order ?? order, duplicate: false, transition: transition,
                refundEnqueued: refundEnqueued))
    }
}
