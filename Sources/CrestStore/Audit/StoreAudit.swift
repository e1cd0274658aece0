import CrestCore
import Foundation

/// One promise of Crest's, as a check on stored data (DESIGN.md, "The promises").
public enum AuditCheck: String, Sendable, Codable, CaseIterable {
    case stockConserved = "stock-conserved"
    case countersMatchOrders = "counters-match-orders"
    case pendingOrderWillMove = "pending-order-will-move"
    case paidOrderHasPayment = "paid-order-has-payment"
    case paymentHasOrder = "payment-has-order"
    case everyChangeTold = "every-change-told"
    case referencesHold = "references-hold"
    case everyEventDelivered = "every-event-delivered"
    case noLeaseRunOut = "no-lease-run-out"
    case differencesResolved = "differences-resolved"

    /// What the check holds true, in a sentence.
    public var rule: String {
        switch self {
        case .stockConserved: "each sale's available + reserved + sold = total, none negative"
        case .countersMatchOrders: "each sale's reserved and sold units are its pending and paid orders' units"
        case .pendingOrderWillMove: "each order awaiting payment has a live expiry job that will end it"
        case .paidOrderHasPayment: "each paid order has its succeeded payment"
        case .paymentHasOrder: "each succeeded payment has a paid order, or a refund under way"
        case .everyChangeTold: "each order's events are numbered 1, 2, … from order.created to its status now"
        case .referencesHold: "each order's sale and each event's order are stored"
        case .everyEventDelivered: "each event an endpoint wants is delivered to it or has a live delivery job"
        case .noLeaseRunOut: "no job is running past its lease without being rescued"
        case .differencesResolved:
            "each difference reconciliation reported is resolved by an operator, and no heal's refund was given up"
        }
    }
}

/// One broken promise: which, where, and what was found.
public struct AuditFinding: Sendable, Codable, Hashable {
    public var check: AuditCheck
    /// The sale, order, or job it is about ("order 0193…", "sale 0193…", "job 42").
    public var subject: String
    public var detail: String

    public init(check: AuditCheck, subject: String, detail: String) {
        self.check = check
        self.subject = subject
        self.detail = detail
    }
}

/// The audit's answer: each check with how many things it looked at and how many broke it.
public struct AuditReport: Sendable, Codable {
    public struct CheckResult: Sendable, Codable {
        public var check: AuditCheck
        public var rule: String
        /// The sales, orders, events or jobs it looked at.
        public var checked: Int
        public var violations: Int
        public var passed: Bool

        init(check: AuditCheck, checked: Int, violations: Int) {
            self.check = check
            self.rule = check.rule
            self.checked = checked
            self.violations = violations
            self.passed = violations == 0
        }
    }

    /// Every check passed.
    public var passed: Bool
    public var readAt: Date
    public var checks: [CheckResult]
    /// The first `StoreAudit.findingsShown` violations, for a person to start from.
    public var findings: [AuditFinding]

    init(readAt: Date, checks: [CheckResult], findings: [AuditFinding]) {
        self.passed = checks.allSatisfy(\.passed)
        self.readAt = readAt
        self.checks = checks
        self.findings = findings
    }
}

/// Checks every promise on a store's records. Pure: both stores read their records their own way,
/// and the rules are written once, here.
public enum StoreAudit {
    /// A job running this long past its lease was not rescued (a claim rescues it within a poll).
    public static let leaseGrace: TimeInterval = 60
    public static let findingsShown = 100

    public static func check(_ records: AuditRecords) -> AuditReport {
        var found: [AuditCheck: [AuditFinding]] = [:]
        var checked: [AuditCheck: Int] = [:]
        func look(_ check: AuditCheck, count: Int = 1) { checked[check, default: 0] += count }
        func report(_ check: AuditCheck, _ subject: String, _ detail: String) {
            found[check, default: []].append(AuditFinding(check: check, subject: subject, detail: detail))
        }

        let liveJobs = records.jobs.filter { $0.state.isLive }
        // An order's own expiry job, or its batch's.
        let expiring = Set(liveJobs.compactMap { try? OrderJobs.expire.parameters(of: $0).orderId })
            .union(liveJobs.compactMap { try? OrderJobs.expireBatch.parameters(of: $0).orderIds }.joined())
        let refunding = Set(liveJobs.compactMap { try? PaymentJobs.refund.parameters(of: $0).orderId })
        var eventsByOrder: [OrderID: [OrderEvent]] = [:]
        for event in records.events { eventsByOrder[event.orderID, default: []].append(event) }

        // Stock: conserved, and equal to what the orders hold.
        var held: [SaleID: (reserved: Int64, sold: Int64)] = [:]
        for order in records.orders {
            switch order.status {
            case .pendingPayment: held[order.saleID, default: (0, 0)].reserved += Int64(order.quantity)
            case .paid: held[order.saleID, default: (0, 0)].sold += Int64(order.quantity)
            default: break
            }
        }
        for sale in records.sales {
            let stock = sale.stock
            look(.stockConserved)
            if !stock.isConserved {
                report(
                    .stockConserved, "sale \(sale.id)",
                    "available \(stock.available) + reserved \(stock.reserved) + sold \(stock.sold) against total \(stock.total)")
            }
            look(.countersMatchOrders)
            let orders = held[sale.id] ?? (0, 0)
            if orders.reserved != stock.reserved || orders.sold != stock.sold {
                report(
                    .countersMatchOrders, "sale \(sale.id)",
                    "counters say reserved \(stock.reserved), sold \(stock.sold); its orders hold \(orders.reserved) pending and \(orders.sold) paid"
                )
            }
        }

        for order in records.orders {
            let subject = "order \(order.id)"
            if order.status == .pendingPayment {
                look(.pendingOrderWillMove)
                if !expiring.contains(order.id) {
                    report(.pendingOrderWillMove, subject, "awaiting payment (window ended \(order.expiresAt)) with no live expiry job")
                }
            }
            if order.status == .paid {
                look(.paidOrderHasPayment)
                if order.payment?.status != .succeeded {
                    report(
                        .paidOrderHasPayment, subject,
                        "paid, but its payment is \(order.payment.map { "\($0.id) \($0.status.rawValue)" } ?? "missing")")
                }
            }
            if order.payment?.status == .succeeded {
                look(.paymentHasOrder)
                if order.status != .paid, !refunding.contains(order.id) {
                    report(
                        .paymentHasOrder, subject,
                        "payment \(order.payment?.id ?? "") succeeded, the order is \(order.status.rawValue) and no refund is under way")
                }
            }
            look(.everyChangeTold)
            let events = (eventsByOrder[order.id] ?? []).sorted { $0.sequence < $1.sequence }
            let numbered = events.enumerated().allSatisfy { $0.offset + 1 == $0.element.sequence }
            if events.first?.kind != .created || !numbered || events.last?.kind != OrderEvent.Kind(reaching: order.status) {
                report(
                    .everyChangeTold, subject,
                    "\(order.status.rawValue), events \(events.map { "\($0.sequence) \($0.kind.rawValue)" }.joined(separator: ", "))")
            }
        }

        // What the tables' foreign keys would hold, and PostgreSQL's orders and events no longer
        // have (their checks were over a quarter of the write path statement's execution): every
        // order's sale and every event's order stored.
        let saleIDs = Set(records.sales.map(\.id))
        let orderIDs = Set(records.orders.map(\.id))
        for order in records.orders {
            look(.referencesHold)
            if !saleIDs.contains(order.saleID) {
                report(.referencesHold, "order \(order.id)", "of sale \(order.saleID), which is not stored")
            }
        }
        for event in records.events {
            look(.referencesHold)
            if !orderIDs.contains(event.orderID) {
                report(
                    .referencesHold, "order \(event.orderID)",
                    "event \(event.sequence) \(event.kind.rawValue) of an order that is not stored")
            }
        }

        // Deliveries: every event each endpoint wanted since it was added.
        var pending: Set<WebhookJobs.Delivery> = []
        var gaveUp: Set<WebhookJobs.Delivery> = []
        for job in records.jobs where job.kind == WebhookJobs.deliver.name {
            guard let delivery = try? WebhookJobs.deliver.parameters(of: job) else { continue }
            if job.state.isLive { pending.insert(delivery) } else if job.state == .discarded { gaveUp.insert(delivery) }
        }
        for endpoint in records.endpoints {
            for event in records.events where event.occurredAt > endpoint.createdAt && endpoint.eventTypes.contains(event.kind) {
                look(.everyEventDelivered)
                let delivery = WebhookJobs.Delivery(endpointId: endpoint.id, orderId: event.orderID, sequence: event.sequence)
                if records.delivered.contains(delivery) || pending.contains(delivery) { continue }
                report(
                    .everyEventDelivered, "order \(event.orderID)",
                    "event \(event.sequence) \(event.kind.rawValue) never reached endpoint \(endpoint.id)"
                        + (gaveUp.contains(delivery) ? ": its delivery job gave up" : " and no delivery job is live"))
            }
        }

        for job in records.jobs where job.state == .running {
            look(.noLeaseRunOut)
            if let until = job.leaseUntil, until.addingTimeInterval(leaseGrace) < records.readAt {
                report(.noLeaseRunOut, "job \(job.id)", "\(job.kind) running, its lease ran out at \(until) and nobody rescued it")
            }
        }

        // Reconciliation: what it could not heal waits for an operator; what it healed took effect.
        for item in records.reported {
            look(.differencesResolved)
            if item.isOpen {
                report(
                    .differencesResolved, "payment \(item.paymentID)",
                    "\(item.kind.rawValue) reported by reconciliation \(item.runID) (item \(item.sequence)) and not resolved")
            }
        }
        for job in records.jobs where job.kind == ReconciliationJobs.refund.name {
            look(.differencesResolved)
            if job.state == .discarded, let refund = try? ReconciliationJobs.refund.parameters(of: job) {
                report(
                    .differencesResolved, "payment \(refund.paymentId)",
                    "reconciliation's refund gave up after \(job.attempt) attempts (job \(job.id))")
            }
        }

        let results = AuditCheck.allCases.map { check in
            AuditReport.CheckResult(check: check, checked: checked[check] ?? 0, violations: found[check]?.count ?? 0)
        }
        let findings = AuditCheck.allCases.flatMap { found[$0] ?? [] }
        return AuditReport(readAt: records.readAt, checks: results, findings: Array(findings.prefix(findingsShown)))
    }
}

extension OrderEvent.Kind {
    /// The event that brought an order to `status`.
    init(reaching status: Order.Status) {
        switch status {
        case .pendingPayment: self = .created
        case .paid: self = .paid
        case .cancelled: self = .cancelled
        case .expired: self = .expired
        case .refunded: self = .refunded
        }
    }
}
