import CrestCore
import Testing

/// The order's state machine tested whole: every status against every event, each allowed arrow,
/// each repeat and each refusal written out once (the diagram is `Order.Status`'s doc comment).
@Suite("Order state machine, whole")
struct OrderStateMachineTests {
    typealias Status = Order.Status

    /// The diagram as a table: (from, event) → to; a missing pair is refused.
    static let arrows: [Status: [Order.Event: Status]] = [
        .pendingPayment: [.pay: .paid, .cancel: .cancelled, .expire: .expired],
        .paid: [.pay: .paid],
        .cancelled: [.cancel: .cancelled, .refund: .refunded],
        .expired: [.expire: .expired, .refund: .refunded],
        .refunded: [.refund: .refunded],
    ]

    @Test(
        "every status × event: the diagram's arrows and repeats are taken, every other pair is refused with the current status",
        arguments: Status.allCases)
    func everyPair(from status: Status) {
        for event in Order.Event.allCases {
            if let target = Self.arrows[status]?[event] {
                #expect(throws: Never.self, "\(status) \(event)") { try status.applying(event) }
                #expect((try? status.applying(event)) == target, "\(status) --\(event)--> \(target)")
            } else {
                #expect(throws: OrderError.notPending(current: status), "\(status) --\(event)--> refused") {
                    try status.applying(event)
                }
            }
        }
    }

    @Test("live and final statuses: only pending and paid hold stock; only pending is not final")
    func liveAndFinal() {
        #expect(Status.allCases.filter(\.isLive) == [.pendingPayment, .paid])
        #expect(Status.allCases.filter { !$0.isFinal } == [.pendingPayment])
        // Every status is reachable from pending_payment by the arrows.
        var reached: Set<Status> = [.pendingPayment]
        var frontier: [Status] = [.pendingPayment]
        while let next = frontier.popLast() {
            for target in (Self.arrows[next] ?? [:]).values where reached.insert(target).inserted {
                frontier.append(target)
            }
        }
        #expect(reached == Set(Status.allCases))
    }
}
