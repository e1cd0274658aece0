import CrestCore
import Foundation
import PostgresNIO

extension PostgresStore {
    public func recordPayments(_ observations: [PaymentObservation], at now: Date) async throws
        -> [Result<PaymentRecord, PaymentRecordFailure>]
    {
        try await transaction { connection in
            var orders = try await PostgresOrders.lock(Set(observations.map(\.orderID)), on: connection, logger: self.logger)
            var results: [Result<PaymentRecord, PaymentRecordFailure>] = []
            for observation in observations {
                let result = try await self.record(observation, order: orders[observation.orderID], on: connection, at: now)
                if case .success(let record) = result { orders[observation.orderID] = record.order }
                results.append(result)
            }
            return results
        }
    }

    /// One observation of a locked order inside the caller's transaction. Its checks come before
    /// its first write, so a refused observation leaves nothing behind.
    func record(_ observation: PaymentObservation, order: Order?, on connection: PostgresConnection, at now: Date)
        async throws -> Result<PaymentRecord, PaymentRecordFailure>
    {
        let orderID = observation.orderID
        guard var order else { return .failure(.orderNotFound) }
        if let mismatch = StoreRules.mismatch(observation, of: order) { return .failure(.mismatch(mismatch)) }
        if order.payment == nil,
            let holder = try await connection.query(
                """
                SELECT id FROM orders WHERE payment_id = \(observation.payment.id) AND id <> \(orderID.description)
                """, logger: logger
            ).values(String.self).first,
            let heldBy = OrderID(holder)
        {
            return .failure(.paymentTaken(.init(orderID: orderID, paymentID: observation.payment.id, heldBy: heldBy)))
        }
        let steps = StoreRules.paymentSteps(observation, of: order)
        if steps.changesNothing(order) {
            return .success(PaymentRecord(order: order, duplicate: true, transition: nil, refundEnqueued: false))
        }
        if let eventID = observation.eventID {
            let inserted = try await connection.query(
                """
                INSERT INTO provider_events (id, order_id, received_at)
                VALUES (\(eventID), \(orderID.description), \(PostgresRows.millis(now)))
                ON CONFLICT DO NOTHING RETURNING 1
                """, logger: logger
            ).collect()
            if inserted.isEmpty {
                return .success(PaymentRecord(order: order, duplicate: true, transition: nil, refundEnqueued: false))
            }
        }
        let attachedPayment = order.payment == nil
        if steps.payment != order.payment {
            let payment = steps.payment
            try await connection.query(
                """
                UPDATE orders SET payment_id = \(payment.id), payment_status = \(payment.status.rawValue),
                    pay_url = \(payment.payURL) WHERE id = \(orderID.description)
                """, logger: logger)
            order.payment = payment
        }
        var transition: TransitionResult?
        var refundEnqueued = false
        for event in steps.events {
            let result = try await PostgresOrders.apply(event, to: order, on: connection, at: now, logger: logger)
            if result.change == .refused { order = result.order } else { transition = result }
            if event == .pay, steps.enqueueRefund {
                refundEnqueued =
                    !(try await PostgresJobs.insert(
                        PaymentJobs.refund(of: orderID), at: now, on: connection, logger: logger
                    ).duplicate)
            }
        }
        return .success(
            PaymentRecord(
                order: transition?.order ?? order, duplicate: false, transition: transition,
                refundEnqueued: refundEnqueued, attachedPayment: attachedPayment))
    }
}
