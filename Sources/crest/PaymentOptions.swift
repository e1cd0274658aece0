import ArgumentParser
import AsyncHTTPClient
import CrestPayments
import Logging

/// `crest serve`'s connection to a payment provider (e.g. `crest psp-sim`).
struct ProviderOptions: ParsableArguments {
    @Option(help: "Base URL of the payment provider's API, e.g. http://127.0.0.1:8090 for crest psp-sim [env: CREST_PROVIDER_URL] (default: none — orders get no payment and expire unpaid)")
    var providerUrl: String?

    @Option(help: "Bearer key for the provider's API [env: CREST_PROVIDER_API_KEY]")
    var providerApiKey: String?

    @Option(help: "Secret that signs the provider's webhooks to POST /v1/webhooks/provider [env: CREST_PROVIDER_WEBHOOK_SECRET]")
    var providerWebhookSecret: String?

    @Option(help: "Milliseconds one provider call may take [env: CREST_PROVIDER_TIMEOUT_MS] (default: 3000)")
    var providerTimeoutMs: Int?

    @Option(help: "Most provider calls in flight at once (bulkhead) [env: CREST_PROVIDER_MAX_IN_FLIGHT] (default: 64)")
    var providerMaxInFlight: Int?

    /// The provider behind its guard, and the webhook secret; `nil` provider when none is configured.
    /// `http` is the provider's own client (to shut down at exit), when a provider is configured.
    func resolve(_ settings: Settings, logger: Logger) throws
        -> (provider: GuardedProvider?, webhookSecret: String?, http: HTTPClient?)
    {
        let secret = settings.optional(providerWebhookSecret, env: "CREST_PROVIDER_WEBHOOK_SECRET")
        guard let url = settings.optional(providerUrl, env: "CREST_PROVIDER_URL") else { return (nil, secret, nil) }
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
            throw ValidationError("the provider URL must start with http:// or https://")
        }
        let timeout = try settings.value(providerTimeoutMs, env: "CREST_PROVIDER_TIMEOUT_MS", default: 3000)
        let maxInFlight = try settings.value(providerMaxInFlight, env: "CREST_PROVIDER_MAX_IN_FLIGHT", default: 64)
        guard (1...600_000).contains(timeout) else { throw ValidationError("provider timeout must be 1…600,000 ms") }
        guard (1...10_000).contains(maxInFlight) else { throw ValidationError("provider max in flight must be 1…10,000") }
        if secret == nil {
            logger.warning("a payment provider is configured without a webhook secret: its webhooks will be refused")
        }
        let http = HTTPPaymentProvider.makeClient(connections: maxInFlight)
        let client = HTTPPaymentProvider(
            http: http, baseURL: url, apiKey: settings.optional(providerApiKey, env: "CREST_PROVIDER_API_KEY"))
        let provider = GuardedProvider(
            client, configuration: .init(timeout: .milliseconds(timeout), maxInFlight: maxInFlight), logger: logger)
        return (provider, secret, http)
    }
}
