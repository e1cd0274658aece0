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
    static func record(_ observation: PaymentObservation, in db: Database, at now: Date) throws
        -> Result<PaymentRecord, PaymentRecordFailure>
    {
        let orderID = observation.orderID
        guard var order = try Self.fetchOrder(db, id: orderID) else { return .failure(.orderNotFound) }
        if let mismatch = StoreRules.mismatch(observation, of: order) { return .failure(.mismatch(mismatch)) }
        if order.payment == nil,
            let holder = try String.fetchOne(
                db.cachedStatement(sql: "SELECT id FROM orders WHERE payment_id = ? AND id <> ?"),
                arguments: [observation.payment.id, orderID.description]),
            let heldBy = OrderID(holder)
        {
            return .failure(.paymentTaken(.init(orderID: orderID, paymentID: observation.payment.id, heldBy: heldBy)))
        }
        let steps = StoreRules.paymentSteps(observation, of: order)
        if steps.changesNothing(order) {
            return .success(PaymentRecord(order: order, duplicate: true, transition: nil, refundEnqueued: false))
        }
        if let eventID = observation.eventID {
            try db.cachedStatement(
                sql: "INSERT INTO provider_events (id, order_id, received_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
            ).execute(arguments: [eventID, orderID.description, SQLiteRows.millis(now)])
            if db.changesCount == 0 {
                return .success(PaymentRecord(order: order, duplicate: true, transition: nil, refundEnqueued: false))
            }
        }
        let attachedPayment = order.payment == nil
        if steps.payment != order.payment {
            let payment = steps.payment
            try db.cachedStatement(sql: "UPDATE orders SET payment_id = ?, payment_status = ?, pay_url = ? WHERE id = ?")
                .execute(arguments: [payment.id, payment.status.rawValue, payment.payURL, orderID.description])
            order.payment = payment
        }
        var transition: TransitionResult?
        var refundEnqueued = false
        for event in steps.events {
            let result = try Self.apply(event, to: order, in: db, at: now)
            if result.change == .refused { order = result.order } else { transition = result }
            if event == .pay, steps.enqueueRefund {
                refundEnqueued = !(try SQLiteJobs.insert(db, PaymentJobs.refund(of: orderID), at: now).duplicate)
            }
        }
        return .success(
            PaymentRecord(
                order: transition?.order ?? order, duplicate: false, transition: transition,
                refundEnqueued: refundEnqueued, attachedPayment: attachedPayment))
    }
}
