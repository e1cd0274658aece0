import CrestCore
import CrestPayments
import CrestStore
import Logging
import Metrics
import Synchronization

/// Makes refused provider webhooks visible: a wrong webhook secret, a stale clock or a provider
/// that sends what Crest cannot take would otherwise only show as orders that never get paid.
///
/// Each refusal counts in `crest_provider_webhooks_refused_total{reason}`, and is told in a warning
/// log line — at most one line per reason every `logInterval`, which then says how many more were
/// refused meanwhile (a provider retrying thousands of webhooks must not flood the log).
final class WebhookRefusals: Sendable {
    static let counterLabel = "crest_provider_webhooks_refused_total"

    private struct Told {
        var lastLogged: ContinuousClock.Instant
        var unlogged = 0
    }

    private let logger: Logger
    private let logInterval: Duration
    private let now: @Sendable () -> ContinuousClock.Instant
    private let told = Mutex<[String: Told]>([:])

    init(
        logger: Logger, logInterval: Duration = .seconds(10),
        now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }
    ) {
        self.logger = logger
        self.logInterval = logInterval
        self.now = now
    }

    /// Counts and (throttled) logs the refusal of a webhook for `error`; errors that are not
    /// refusals (Crest unavailable: the provider retries) are left alone.
    func refused(_ error: any Error) {
        guard let (reason, detail) = Self.reason(for: error) else { return }
        Counter(label: Self.counterLabel, dimensions: [("reason", reason)]).increment()
        let instant = now()
        let suppressed = told.withLock { told -> Int? in
            guard var entry = told[reason] else {
                told[reason] = Told(lastLogged: instant)
                return 0
            }
            guard instant - entry.lastLogged >= logInterval else {
                entry.unlogged += 1
                told[reason] = entry
                return nil
            }
            defer { told[reason] = Told(lastLogged: instant) }
            return entry.unlogged
        }
        guard let suppressed else { return }
        var metadata: Logger.Metadata = ["reason": "\(reason)", "detail": "\(detail)"]
        if suppressed > 0 { metadata["refused_since_last_line"] = "\(suppressed)" }
        logger.warning("provider webhook refused", metadata: metadata)
    }

    /// The counter's reason and the log line's detail for each kind of refusal.
    static func reason(for error: any Error) -> (reason: String, detail: String)? {
        switch error {
        case let failure as WebhookSignature.Failure:
            switch failure {
            case .malformed:
                return ("signature_malformed", "the \(ProviderAPI.signatureHeader) header is missing or malformed")
            case .stale:
                return ("signature_stale", "the signature's time is over 300 s from this server's clock")
            case .mismatch:
                return (
                    "signature_mismatch",
                    "the signature does not verify: is --provider-webhook-secret the provider's webhook secret?"
                )
            }
        case is WebhooksNotConfiguredError:
            return ("not_configured", "no --provider-webhook-secret is configured")
        case is BodyDecodingError, is ValidationError:
            return ("invalid_event", "the body is not a provider event Crest can read: \(error)")
        case let error as UnknownEventTypeError:
            return ("unknown_event_type", "unknown event type \(error.type)")
        case let error as PaymentMismatchError:
            return ("payment_mismatch", "order \(error.orderID) has payment \(error.known), not \(error.observed)")
        case let error as PaymentTakenError:
            return ("payment_taken", "payment \(error.paymentID) is held by order \(error.heldBy), not \(error.orderID)")
        case OrderError.orderNotFound:
            return ("order_not_found", "the event names an order Crest does not have")
        default:
            return nil
        }
    }
}
