import Foundation

/// The jobs of an order's lifecycle: their kinds and payloads (`{"orderId": "…"}`).
public enum OrderJobs {
    /// Expires the order at its `expiresAt` unless it was paid or cancelled (TCC cancel).
    public static let expireKind = "order.expire"
    /// Turns a paid order's reserved stock into sold (TCC confirm).
    public static let confirmKind = "order.confirm"

    public static let expireMaxAttempts = 25
    public static let confirmMaxAttempts = 10

    public static func expiry(of id: OrderID, at expiresAt: Date) -> NewJob {
        NewJob(kind: expireKind, payload: payload(id), runAt: expiresAt, maxAttempts: expireMaxAttempts)
    }

    /// One live confirmation per order: a second payment signal while one waits adds nothing.
    public static func confirmation(of id: OrderID) -> NewJob {
        NewJob(
            kind: confirmKind, payload: payload(id), maxAttempts: confirmMaxAttempts,
            uniqueKey: "\(confirmKind):\(id)")
    }

    /// The order a lifecycle job's payload names, or `nil` when the payload is not one.
    public static func orderID(in payload: String) -> OrderID? {
        struct Payload: Decodable { var orderId: OrderID }
        return try? JSONDecoder().decode(Payload.self, from: Data(payload.utf8)).orderId
    }

    /// Written by hand: ids are hex and dashes, and this runs once per reserved order.
    static func payload(_ id: OrderID) -> String { #"{"orderId":"\#(id)"}"# }
}
