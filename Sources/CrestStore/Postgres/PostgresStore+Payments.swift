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
    private func record(_ observation: PaymentObservation, order: Order?, on connection: PostgresConnection, at now: Date)
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
        let steps = StoreRules.paymentSteps(observation, of: order)
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
                refundEnqueued = !(try await PostgresJobs.insert(
                    PaymentJobs.refund(of: orderID), at: now, on: connection, logger: logger
                ).duplicate)
            }
        }
        return .success(
            PaymentRecord(
                order: transition?.order ?? order, duplicate: false, transition: transition,
                refundEnqueued: refundEnqueued))
    }
}

extension PostgresStore {
    public func createWebhookEndpoint(_ endpoint: WebhookEndpoint) async throws {
        _ = try await rows(
            """
            INSERT INTO webhook_endpoints (id, url, secret, event_types, created_at)
            VALUES (\(endpoint.id.description), \(endpoint.url), \(endpoint.secret),
                \(endpoint.eventTypes.map(\.rawValue).sorted().joined(separator: ",")),
                \(PostgresRows.millis(endpoint.createdAt)))
            """)
    }

    public func webhookEndpoints() async throws -> [WebhookEndpoint] {
        try await withConnection { connection in
            try await PostgresEvents.activeEndpoints(on: connection, logger: self.logger).sorted { $0.id < $1.id }
        }
    }

    public func deleteWebhookEndpoint(_ id: WebhookEndpointID, at now: Date) async throws -> Bool {
        try await rows(
            """
            UPDATE webhook_endpoints SET deleted_at = \(PostgresRows.millis(now))
            WHERE id = \(id.description) AND deleted_at IS NULL RETURNING 1
            """).count == 1
    }

    public func webhookDelivery(_ delivery: WebhookJobs.Delivery) async throws -> WebhookDeliveryContext? {
        let order = delivery.orderId.description
        let endpointID = delivery.endpointId.description
        return try await withConnection { connection in
            guard
                let event = try await connection.query(
                    """
                    SELECT \(unescaped: PostgresRows.eventColumns) FROM order_events
                    WHERE order_id = \(order) AND sequence = \(delivery.sequence)
                    """, logger: self.logger
                ).collect().first.map(PostgresRows.event),
                let order = try await connection.query(
                    "SELECT \(unescaped: PostgresRows.orderColumns) FROM orders WHERE id = \(order)", logger: self.logger
                ).collect().first.map(PostgresRows.order)
            else { return nil }
            let endpoint = try await connection.query(
                """
                SELECT \(unescaped: PostgresRows.endpointColumns) FROM webhook_endpoints
                WHERE id = \(endpointID) AND deleted_at IS NULL
                """, logger: self.logger
            ).collect().first.map(PostgresRows.endpoint)
            let waiting = try await connection.query(
                """
                SELECT COUNT(*) FROM webhook_deliveries
                WHERE endpoint_id = \(endpointID) AND order_id = \(order.id.description)
                    AND sequence < \(delivery.sequence) AND delivered_at IS NULL
                """, logger: self.logger
            ).values(Int64.self).first ?? 0
            return WebhookDeliveryContext(endpoint: endpoint, event: event, order: order, previousDelivered: waiting == 0)
        }
    }

    public func markDelivered(_ delivery: WebhookJobs.Delivery, at now: Date) async throws {
        _ = try await rows(
            """
            UPDATE webhook_deliveries SET delivered_at = COALESCE(delivered_at, \(PostgresRows.millis(now)))
            WHERE endpoint_id = \(delivery.endpointId.description) AND order_id = \(delivery.orderId.description)
                AND sequence = \(delivery.sequence)
            """)
    }
}
