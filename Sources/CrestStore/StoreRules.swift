import CrestCore
import Foundation

/// The decisions every store makes the same way, apart from how it reads and writes: which
/// reservation is granted, what a transition does to the counters, what a payment observation
/// leads to. Each store feeds them what it read and carries out what they decide, so the embedded
/// and the PostgreSQL store cannot drift apart.
enum StoreRules {
    /// The statuses whose units count against the per-buyer limit, as an SQL list for both stores.
    static let liveStatusesSQL =
        "(" + Order.Status.allCases.filter(\.isLive).map { "'\($0.rawValue)'" }.joined(separator: ", ") + ")"

    /// The job states with work ahead (one live job per unique key), as an SQL list for PostgreSQL
    /// (the embedded store says it as `SQLiteJobs.liveSQL`: a long `IN` list costs SQLite a temporary table).
    static let liveJobStatesSQL =
        "(" + Job.State.allCases.filter(\.isLive).map { "'\($0.rawValue)'" }.joined(separator: ", ") + ")"

    /// The buyer of a cancelled-attempt record made by an operator: it refuses every buyer's
    /// attempt with its key. A buyer's own record refuses only that buyer's.
    static let anyBuyer = ""

    /// Decides one reservation against its sale with `ReservationRules` (the rules the stock gate
    /// applies too): `nil` grants it (the caller creates the order and moves the units), anything
    /// else is the outcome. Each read runs only when its check is reached.
    static func decide(
        _ reservation: Reservation, sale: Sale, existing: () throws -> Order?, cancelled: () throws -> Bool,
        held: () throws -> Int
    ) rethrows -> ReservationOutcome? {
        var found: Order?
        let verdict = try ReservationRules.decide(
            reservation.request, sale: sale, at: reservation.createdAt,
            knownKey: {
                found = try existing()
                return found != nil
            },
            cancelled: cancelled, held: held, available: sale.stock.available)
        switch verdict {
        case .grant: return nil
        case .knownKey: return .duplicate(found!)
        case .refused(let error): return .refused(error)
        }
    }

    /// What applying `event` to `order` does.
    struct Transition {
        var change: TransitionResult.Change
        /// The order's status afterwards (its status now unless the arrow was taken).
        var target: Order.Status
        /// The counters the order's units move between (a refund moves none: a refunded order's
        /// units went back when it was cancelled or expired).
        var move: (from: String, to: String)?
        /// A payment for an order that already gave its stock back: flag it for an operator.
        var flagsLateConfirm: Bool
    }

    static func transition(_ event: Order.Event, of order: Order) -> Transition {
        guard let target = try? order.status.applying(event) else {
            let late = event == .pay && (order.status == .cancelled || order.status == .expired)
            return Transition(change: .refused, target: order.status, move: nil, flagsLateConfirm: late)
        }
        guard target != order.status else {
            return Transition(change: .repeated, target: target, move: nil, flagsLateConfirm: false)
        }
        let move: (from: String, to: String)? =
            switch event {
            case .pay: ("reserved", "sold")
            case .cancel, .expire: ("reserved", "available")
            case .refund: nil
            }
        return Transition(change: .applied, target: target, move: move, flagsLateConfirm: false)
    }

    /// What recording a (new, not duplicate) payment observation does to its order.
    struct PaymentSteps {
        /// The order's payment afterwards: the status only moves forward.
        var payment: OrderPayment
        /// Events to apply to the order, in order.
        var events: [Order.Event]
        /// Money arrived for an order that gave its stock back: send it back.
        var enqueueRefund: Bool

        /// The observation repeats what `order` already shows.
        func changesNothing(_ order: Order) -> Bool { payment == order.payment && events.isEmpty }
    }

    /// The mismatch when the observation names another payment than the order's.
    static func mismatch(_ observation: PaymentObservation, of order: Order) -> PaymentMismatchError? {
        guard let known = order.payment, known.id != observation.payment.id else { return nil }
        return PaymentMismatchError(orderID: order.id, known: known.id, observed: observation.payment.id)
    }

    static func paymentSteps(_ observation: PaymentObservation, of order: Order) -> PaymentSteps {
        let observed = observation.payment
        let previous = order.payment?.status
        let status = previous?.merged(with: observed.status) ?? observed.status
        var steps = PaymentSteps(
            payment: OrderPayment(id: observed.id, status: status, payURL: observed.payURL ?? order.payment?.payURL),
            events: [], enqueueRefund: false)
        let newlySucceeded = status == .succeeded && previous != .succeeded && previous != .refunded
        let gaveStockBack = order.status == .cancelled || order.status == .expired
        if newlySucceeded || (status == .refunded && previous == nil) {
            if order.status == .pendingPayment, status == .succeeded {
                steps.events.append(.pay)
            } else if gaveStockBack {
                // Refused, it flags the order; the money goes back.
                steps.events.append(.pay)
                steps.enqueueRefund = status == .succeeded
            }
        }
        if status == .refunded, previous != .refunded, gaveStockBack { steps.events.append(.refund) }
        return steps
    }
}

extension Reservation {
    /// The order this reservation creates when it is granted.
    var pendingOrder: Order {
        Order(
            id: orderID, saleID: request.saleID, buyer: request.buyer, quantity: request.quantity, amount: amount,
            status: .pendingPayment, createdAt: createdAt, expiresAt: expiresAt, updatedAt: createdAt)
    }
}
