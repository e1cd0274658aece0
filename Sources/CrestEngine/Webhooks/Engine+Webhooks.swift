import CrestCore
import CrestStore
import Crypto
import Foundation
import Logging

/// An operator request about a webhook endpoint that does not exist.
package struct WebhookEndpointNotFound: DomainError, Hashable {
    package init() {}
}

extension Engine {
    /// Registers a merchant endpoint; without a secret, one is generated (and returned once).
    package func createWebhookEndpoint(url: String, secret: String?, eventTypes: Set<OrderEvent.Kind>) async throws
        -> WebhookEndpoint
    {
        let secret =
            secret ?? "whsec_"
            + SymmetricKey(size: .bits256).withUnsafeBytes { bytes in
                bytes.map { String(format: "%02x", $0) }.joined()
            }
        try WebhookEndpoint.validate(url: url, secret: secret)
        let now = clock()
        let endpoint = WebhookEndpoint(
            id: WebhookEndpointID.make(now: now), url: url, secret: secret, eventTypes: eventTypes, createdAt: now)
        try await withStore("create webhook endpoint") { try await store.createWebhookEndpoint(endpoint) }
        logger.info("webhook endpoint created", metadata: ["endpoint": "\(endpoint.id)", "url": "\(url)"])
        return endpoint
    }

    package func webhookEndpoints() async throws -> [WebhookEndpoint] {
        try await withStore("list webhook endpoints") { try await store.webhookEndpoints() }
    }

    package func deleteWebhookEndpoint(_ id: WebhookEndpointID) async throws {
        let deleted = try await withStore("delete webhook endpoint") {
            try await store.deleteWebhookEndpoint(id, at: clock())
        }
        guard deleted else { throw WebhookEndpointNotFound() }
    }
}
