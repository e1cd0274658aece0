import ArgumentParser
import AsyncHTTPClient
import CrestEngine
import CrestPayments
import Logging

/// `crest serve`'s connection to a payment provider (e.g. `crest psp-sim`).
struct ProviderOptions: ParsableArguments {
    static let url = TextSetting(
        env: "CREST_PROVIDER_URL", defaultText: "none — orders get no payment and expire unpaid",
        meaning: "Base URL of the payment provider's API, e.g. http://127.0.0.1:8090 for crest psp-sim")
    @Option(help: Self.url.help) var providerUrl: String?

    static let apiKey = TextSetting(env: "CREST_PROVIDER_API_KEY", meaning: "Bearer key for the provider's API")
    @Option(help: Self.apiKey.help) var providerApiKey: String?

    static let webhookSecret = TextSetting(
        env: "CREST_PROVIDER_WEBHOOK_SECRET", meaning: "Secret that signs the provider's webhooks to POST /v1/webhooks/provider")
    @Option(help: Self.webhookSecret.help) var providerWebhookSecret: String?

    @Option(help: Self.timeout.help) var providerTimeoutMs: Int?

    @Option(help: Self.maxInFlight.help) var providerMaxInFlight: Int?

    static let creation = TextSetting(
        env: "CREST_PAYMENT_CREATION", defaultValue: PaymentCreation.order.rawValue,
        meaning:
            "When an order's payment is created at the provider: order (by a job moments after the order; a buyer at the checkout, POST /v1/orders/{id}/payment, has it created first) or checkout (only at the checkout: an order nobody comes to pay costs no provider call)"
    )
    @Option(help: Self.creation.help) var paymentCreation: String?

    /// `--payment-creation` as `serve` takes it: the flag, else the environment, else `order`.
    static func paymentCreation(_ flag: String?, in settings: Settings) throws -> PaymentCreation {
        try PaymentCreation.named(creation.value(flag, in: settings))
    }

    static let timeout = IntSetting(
        name: "provider timeout", env: "CREST_PROVIDER_TIMEOUT_MS", defaultValue: 3000, range: 1...600_000, unit: " ms",
        meaning: "Milliseconds one provider call may take")
    static let maxInFlight = IntSetting(
        name: "provider max in flight", env: "CREST_PROVIDER_MAX_IN_FLIGHT", defaultValue: 64, range: 1...10_000,
        meaning: "Most provider calls in flight at once (bulkhead)")

    /// The provider behind its guard, and the webhook secret; `nil` provider when none is configured.
    /// `http` is the provider's own client (to shut down at exit), when a provider is configured.
    func resolve(_ settings: Settings, traced: Bool, logger: Logger) throws
        -> (provider: GuardedProvider?, webhookSecret: String?, http: HTTPClient?)
    {
        let secret = Self.webhookSecret.resolve(providerWebhookSecret, in: settings)
        guard let url = Self.url.resolve(providerUrl, in: settings) else { return (nil, secret, nil) }
        guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
            throw ValidationError("the provider URL must start with http:// or https://")
        }
        let timeout = try Self.timeout.resolve(providerTimeoutMs, in: settings)
        let maxInFlight = try Self.maxInFlight.resolve(providerMaxInFlight, in: settings)
        if secret == nil {
            logger.warning("a payment provider is configured without a webhook secret: its webhooks will be refused")
        }
        let http = HTTPPaymentProvider.makeClient(connections: maxInFlight, traced: traced)
        let client = HTTPPaymentProvider(
            http: http, baseURL: url, apiKey: Self.apiKey.resolve(providerApiKey, in: settings))
        let provider = GuardedProvider(
            client, configuration: .init(timeout: .milliseconds(timeout), maxInFlight: maxInFlight), logger: logger)
        return (provider, secret, http)
    }
}

extension PaymentCreation {
    /// `--payment-creation`'s value (`serve`, `demo`), or a usage error naming the choices.
    static func named(_ text: String) throws -> PaymentCreation {
        guard let value = PaymentCreation(rawValue: text) else {
            throw ValidationError("--payment-creation must be \(allCases.map(\.rawValue).joined(separator: " or ")), not \(text)")
        }
        return value
    }
}
