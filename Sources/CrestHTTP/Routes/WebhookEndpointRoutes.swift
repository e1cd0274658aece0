import CrestCore
import CrestEngine
import Foundation
import HTTPTypes
import Hummingbird

/// `/v1/webhook-endpoints`: operators register the merchant URLs that receive order events.
struct WebhookEndpointRoutes {
    let engine: Engine

    func add(to router: Router<CrestRequestContext>, admin: AdminAuthMiddleware<CrestRequestContext>) {
        router.group("v1/webhook-endpoints")
            .add(middleware: admin)
            .post(use: create)
            .get(use: list)
            .delete("{endpointID}", use: delete)
    }

    /// `201` with the endpoint and its secret (shown only here).
    @Sendable func create(_ request: Request, context: CrestRequestContext) async throws
        -> EditedResponse<WebhookEndpointBody>
    {
        let body = try await request.decodeJSON(as: CreateWebhookEndpointBody.self, context: context)
        let endpoint = try await engine.createWebhookEndpoint(
            url: body.url, secret: body.secret, eventTypes: Set(body.eventTypes ?? []))
        return EditedResponse(
            status: .created, headers: [.location: "/v1/webhook-endpoints/\(endpoint.id)"],
            response: WebhookEndpointBody(endpoint, showSecret: true))
    }

    @Sendable func list(_ request: Request, context: CrestRequestContext) async throws -> WebhookEndpointListBody {
        WebhookEndpointListBody(endpoints: try await engine.webhookEndpoints().map { WebhookEndpointBody($0) })
    }

    @Sendable func delete(_ request: Request, context: CrestRequestContext) async throws -> Response {
        guard let raw = context.parameters.get("endpointID"), let id = WebhookEndpointID(raw) else {
            throw WebhookEndpointNotFound()
        }
        try await engine.deleteWebhookEndpoint(id)
        return Response(status: .noContent)
    }
}

struct CreateWebhookEndpointBody: Decodable {
    var url: String
    /// Generated when absent.
    var secret: String?
    /// All event types when absent or empty.
    var eventTypes: [OrderEvent.Kind]?
}

struct WebhookEndpointBody: Codable, ResponseEncodable {
    var id: WebhookEndpointID
    var url: String
    var eventTypes: [OrderEvent.Kind]
    var createdAt: Timestamp
    var secret: String?

    init(_ endpoint: WebhookEndpoint, showSecret: Bool = false) {
        id = endpoint.id
        url = endpoint.url
        eventTypes = endpoint.eventTypes.isEmpty ? OrderEvent.Kind.allCases : endpoint.eventTypes.sorted()
        createdAt = Timestamp(endpoint.createdAt)
        secret = showSecret ? endpoint.secret : nil
    }
}

struct WebhookEndpointListBody: Codable, ResponseEncodable {
    var endpoints: [WebhookEndpointBody]
}
