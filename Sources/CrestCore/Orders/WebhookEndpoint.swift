import Foundation

public enum WebhookEndpointKind {}
/// Identifies a merchant's webhook endpoint.
public typealias WebhookEndpointID = Identifier<WebhookEndpointKind>

/// A merchant's URL that receives Crest's order events, signed with its secret.
public struct WebhookEndpoint: Sendable, Hashable {
    public static let urlMaxLength = 2048
    public static let secretLength = 16...256

    public var id: WebhookEndpointID
    public var url: String
    public var secret: String
    /// The event types delivered; all of them when empty.
    public var eventTypes: Set<OrderEvent.Kind>
    public var createdAt: Date

    public init(id: WebhookEndpointID, url: String, secret: String, eventTypes: Set<OrderEvent.Kind>, createdAt: Date) {
        self.id = id
        self.url = url
        self.secret = secret
        self.eventTypes = eventTypes
        self.createdAt = createdAt
    }

    public func wants(_ kind: OrderEvent.Kind) -> Bool { eventTypes.isEmpty || eventTypes.contains(kind) }

    /// Checks a URL and a secret an operator gave.
    public static func validate(url: String, secret: String) throws(ValidationError) {
        var issues: [ValidationError.Issue] = []
        let parsed = URL(string: url)
        if url.count > urlMaxLength || parsed?.host == nil || !(parsed?.scheme == "http" || parsed?.scheme == "https") {
            issues.append(.init(field: "url", message: "must be an http or https URL of at most \(urlMaxLength) characters"))
        }
        if !secretLength.contains(secret.count) || !secret.utf8.allSatisfy({ $0 >= 0x21 && $0 <= 0x7E }) {
            issues.append(
                .init(
                    field: "secret",
                    message: "must be \(secretLength.lowerBound) to \(secretLength.upperBound) visible ASCII characters"))
        }
        guard issues.isEmpty else { throw ValidationError(issues: issues) }
    }
}

/// The jobs that deliver events to merchants.
public enum WebhookJobs {
    /// Delivers one event to one merchant endpoint.
    public static let deliver = JobKind<Delivery>("webhook.deliver", maxAttempts: 20)

    /// One delivery: the event `sequence` of `orderID` to `endpointID`.
    public struct Delivery: JobParameters {
        public var endpointId: WebhookEndpointID
        public var orderId: OrderID
        public var sequence: Int

        public init(endpointId: WebhookEndpointID, orderId: OrderID, sequence: Int) {
            self.endpointId = endpointId
            self.orderId = orderId
            self.sequence = sequence
        }

        /// Written by hand: one per event and endpoint, in the transaction of the change.
        public var payload: String {
            #"{"endpointId":"\#(endpointId)","orderId":"\#(orderId)","sequence":\#(sequence)}"#
        }
    }

    public static func delivery(_ delivery: Delivery) -> NewJob { deliver.job(delivery) }
}
