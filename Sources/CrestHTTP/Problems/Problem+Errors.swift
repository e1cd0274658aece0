import CrestCore
import CrestEngine
import CrestIdentity
import CrestPayments
import CrestStore
import Foundation
import HTTPTypes
import Hummingbird
import NIOHTTP1

/// The one place where errors become problems: each kind of error maps to one problem type.
extension Problem {
    /// The problem for `error`; `nil` for errors nobody expected (they become a logged 500).
    static func from(_ error: any Error, now: Date = Date()) -> Problem? {
        switch error {
        case let error as OrderError: return forOrderError(error, now: now)
        case let error as JobError:
            switch error {
            case .jobNotFound:
                return Problem(kind: "job-not-found", title: "No such job", status: .notFound)
            case .notRetryable(let current):
                return Problem(
                    kind: "job-not-retryable", title: "The job cannot be retried now", status: .conflict,
                    detail: "the job is \(current.rawValue); only discarded, retryable and scheduled jobs can be retried")
            }
        case let error as ValidationError:
            var problem = Problem(
                kind: "invalid-request", title: "The request is not valid", status: .badRequest,
                detail: error.issues.map { "\($0.field) \($0.message)" }.joined(separator: "; "))
            problem.errors = error.issues
            return problem
        case let error as BodyDecodingError:
            return Problem(
                kind: "invalid-body", title: "The request body is not valid JSON for this route",
                status: .badRequest, detail: error.detail)
        case is AdminAuthError:
            var problem = Problem(
                kind: "unauthorized", title: "A valid admin bearer token is required", status: .unauthorized)
            problem.headers[.wwwAuthenticate] = "Bearer realm=\"crest-admin\""
            return problem
        case let error as BuyerPassError: return forBuyerPassError(error)
        case let error as RateLimited:
            var problem = retryLater(
                kind: "rate-limited", title: "Too many attempts; retry later", status: .tooManyRequests,
                detail:
                    "the \(error.scope)'s limit is \(error.limit); the attempt was not processed, send it again (same key) after Retry-After",
                after: error.retryAfter)
            if error.scope == "buyer" {
                for field in RateLimiter.headers(error.limit, remaining: 0, reset: error.retryAfter) {
                    problem.headers[field.name] = field.value
                }
            }
            return problem
        case let error as WritePathFull:
            return retryLater(
                kind: "overloaded", title: "Too many orders are being placed at once; retry shortly", status: .serviceUnavailable,
                detail:
                    error.reason == .queueFull
                    ? "the write path is full and its queue too; the attempt was not processed, send it again (same key) after Retry-After"
                    : "no place on the write path came free in time; the attempt was not processed, send it again (same key) after Retry-After",
                after: error.retryAfterSeconds)
        case let error as Shed:
            return retryLater(
                kind: "shed", title: "Crest is refusing minor requests to keep orders flowing; retry later", status: .serviceUnavailable,
                detail: "\(error.routeClass.rawValue) routes are refused while Crest is under pressure",
                after: error.retryAfterSeconds)
        case let error as RiskRefused:
            var problem = Problem(
                kind: "risk-refused", title: "The shop's risk rules refuse this attempt", status: .forbidden,
                detail: error.retryAfter == nil
                    ? "the attempt was not processed; if this is a mistake, contact the shop"
                    : "too many attempts in a short time; the attempt was not processed, send it again after Retry-After")
            if let retryAfter = error.retryAfter { problem.headers[.retryAfter] = "\(retryAfter)" }
            return problem
        case is RiskRuleNotFound:
            return Problem(kind: "risk-rule-not-found", title: "No such risk rule", status: .notFound)
        case is ReconciliationRunNotFound:
            return Problem(kind: "reconciliation-not-found", title: "No such reconciliation", status: .notFound)
        case is ReconciliationItemNotFound:
            return Problem(kind: "reconciliation-item-not-found", title: "The reconciliation has no such item", status: .notFound)
        case let error as ReconciliationItemNotResolvable:
            switch error.reason {
            case .healed(let resolution):
                return Problem(
                    kind: "reconciliation-item-not-reported", title: "Only a reported difference is resolved by an operator",
                    status: .conflict, detail: "this difference is \(resolution.rawValue): reconciliation dealt with it")
            case .resolvedBefore(let given):
                return Problem(
                    kind: "reconciliation-item-resolved", title: "This difference was resolved before", status: .conflict,
                    detail:
                        "resolved at \(Timestamp.format(given.at)) on reconciliation \(given.runID) item \(given.sequence): \(given.note)")
            }
        case is NoPaymentProvider:
            return Problem(
                kind: "no-payment-provider", title: "This Crest has no payment provider", status: .conflict,
                detail: "start crest serve with --provider-url")
        case let error as PaymentProviderRefused:
            return Problem(
                kind: "payment-provider-refused", title: "The payment provider refused to create the payment",
                status: .badGateway, detail: error.detail)
        case let error as BuyerForbidden:
            var problem: Problem
            switch error {
            case .saleNotAdmitted:
                problem = Problem(
                    kind: "sale-not-admitted", title: "The buyer pass does not admit this sale", status: .forbidden,
                    detail: "the pass lists the sales it admits (its sales claim); ask the shop for a pass for this one")
                problem.headers[.wwwAuthenticate] = #"Bearer realm="crest", error="insufficient_scope""#
            case .buyerMismatch:
                problem = Problem(
                    kind: "buyer-mismatch", title: "The body names another buyer than the pass", status: .forbidden,
                    detail: "leave buyer out of the body, or give the pass's subject")
            case .operatorCannotOrder:
                problem = Problem(
                    kind: "buyer-pass-required", title: "Orders are placed with a buyer's pass", status: .forbidden,
                    detail: "the admin token reads and cancels orders but cannot place one for a buyer")
            }
            return problem
        case let error as WebhookSignature.Failure:
            var problem: Problem
            switch error {
            case .stale:
                problem = Problem(
                    kind: "stale-signature", title: "The webhook's timestamp is too far from now", status: .unauthorized,
                    detail: "signatures older or newer than 300 seconds are refused")
            case .malformed, .mismatch:
                problem = Problem(
                    kind: "invalid-signature", title: "The webhook's signature does not verify", status: .unauthorized,
                    detail: "expected \(ProviderAPI.signatureHeader): t=<unix time>,v1=<hex HMAC-SHA256 of \"t.body\">")
            }
            return problem
        case let error as UnknownEventTypeError:
            return Problem(
                kind: "unknown-event-type", title: "The event type is not one Crest knows", status: .unprocessableContent,
                detail: "unknown type \(error.type)")
        case let error as PaymentMismatchError:
            return Problem(
                kind: "payment-mismatch", title: "The order already has another payment", status: .conflict,
                detail: "order \(error.orderID) has payment \(error.known), not \(error.observed)")
        case let error as PaymentTakenError:
            return Problem(
                kind: "payment-taken", title: "Another order holds this payment", status: .conflict,
                detail: "payment \(error.paymentID) belongs to order \(error.heldBy), not \(error.orderID)")
        case is WebhookEndpointNotFound:
            return Problem(kind: "webhook-endpoint-not-found", title: "No such webhook endpoint", status: .notFound)
        case is WebhooksNotConfiguredError:
            return retryLater(
                kind: "unavailable", title: "Crest cannot serve this now; retry later", status: .serviceUnavailable,
                detail: "no provider webhook secret is configured", after: 60)
        case let error as UnavailableError:
            return retryLater(
                kind: "unavailable", title: "Crest cannot serve this now; retry later", status: .serviceUnavailable, detail: error.reason,
                after: error.retryAfterSeconds)
        case let error as any HTTPResponseError:
            return from(status: error.status)
        case let error as HTTPParserError:
            // Met while reading the body: broken chunked framing, or the client closing the
            // connection mid-body. The client's fault, never the server's.
            return Problem(
                kind: "malformed-request", title: "The request is not well-formed HTTP", status: .badRequest,
                detail: "\(error)")
        default:
            return nil
        }
    }

    /// A problem that tells its client when to come back (`Retry-After`, in seconds).
    private static func retryLater(
        kind: String, title: String, status: HTTPResponse.Status, detail: String, after seconds: Int
    ) -> Problem {
        var problem = Problem(kind: kind, title: title, status: status, detail: detail)
        problem.headers[.retryAfter] = "\(seconds)"
        return problem
    }

    /// `401` with the RFC 6750 challenge: no error code for a request without a pass (it is
    /// only told how to authenticate), `invalid_token` with the reason for a pass refused.
    private static func forBuyerPassError(_ error: BuyerPassError) -> Problem {
        var problem: Problem
        switch error {
        case .missing:
            problem = Problem(
                kind: "buyer-pass-required", title: "A buyer pass is required", status: .unauthorized,
                detail: "send the pass the shop signed for the buyer: Authorization: Bearer <pass>")
            problem.headers[.wwwAuthenticate] = #"Bearer realm="crest""#
        default:
            problem = Problem(
                kind: "invalid-buyer-pass", title: "The buyer pass is not valid", status: .unauthorized,
                detail: error.description)
            let reason: String
            switch error {
            case .expired: reason = "expired"
            case .notYetValid: reason = "not yet valid"
            case .badSignature: reason = "bad signature"
            case .invalidClaims: reason = "invalid claims"
            case .malformed, .missing: reason = "malformed"
            }
            problem.headers[.wwwAuthenticate] =
                #"Bearer realm="crest", error="invalid_token", error_description="\#(reason)""#
        }
        return problem
    }

    static func from(status: HTTPResponse.Status) -> Problem {
        switch status {
        case .notFound: Problem(kind: "not-found", title: "No such resource", status: .notFound)
        case .contentTooLarge:
            Problem(
                kind: "payload-too-large", title: "The request body is too large", status: .contentTooLarge,
                detail: "request bodies are limited to \(CrestRequestContext.maxBodySize) bytes")
        case .methodNotAllowed:
            Problem(kind: "method-not-allowed", title: "Method not allowed", status: .methodNotAllowed)
        default:
            Problem(
                kind: "http-\(status.code)", title: status.reasonPhrase.isEmpty ? "HTTP \(status.code)" : status.reasonPhrase,
                status: status)
        }
    }

    private static func forOrderError(_ error: OrderError, now: Date) -> Problem {
        switch error {
        case .soldOut:
            return Problem(kind: "sold-out", title: "The sale is sold out", status: .conflict)
        case .buyerLimitReached(let limit):
            return Problem(
                kind: "buyer-limit-reached", title: "The buyer's limit for this sale is reached", status: .conflict,
                detail: "a buyer may hold at most \(limit) unit(s) of this sale")
        case .quantityAboveLimit(let limit):
            var problem = Problem(
                kind: "invalid-request", title: "The request is not valid", status: .badRequest,
                detail: "quantity must be between 1 and \(limit), the sale's per-buyer limit")
            problem.errors = [.init(field: "quantity", message: "must be between 1 and \(limit)")]
            return problem
        case .saleNotOpen(let startsAt):
            var problem = Problem(
                kind: "sale-not-open", title: "The sale has not started", status: .conflict,
                detail: "the sale opens at \(startsAt.formatted(.iso8601))")
            problem.headers[.retryAfter] = "\(max(1, Int(startsAt.timeIntervalSince(now).rounded(.up))))"
            return problem
        case .saleClosed:
            return Problem(kind: "sale-closed", title: "The sale has ended", status: .conflict)
        case .saleNotFound:
            return Problem(kind: "sale-not-found", title: "No such sale", status: .notFound)
        case .orderNotFound:
            return Problem(kind: "order-not-found", title: "No such order", status: .notFound)
        case .idempotencyKeyReused:
            return Problem(
                kind: "idempotency-key-reused", title: "The idempotency key was used with a different request",
                status: .unprocessableContent,
                detail: "send a new Idempotency-Key for a different buyer or quantity")
        case .requestInProgress:
            var problem = Problem(
                kind: "request-in-progress", title: "A request with this idempotency key is still in progress",
                status: .conflict)
            problem.headers[.retryAfter] = "1"
            return problem
        case .attemptCancelled:
            return Problem(
                kind: "attempt-cancelled", title: "This attempt was cancelled before it placed an order",
                status: .conflict, detail: "send a new Idempotency-Key to try again")
        case .notPending(let current):
            return Problem(
                kind: "order-not-pending", title: "The order is no longer awaiting payment", status: .conflict,
                detail: "the order is \(current.rawValue)")
        case .paymentWindowClosed(let at):
            return Problem(
                kind: "payment-window-closed", title: "The order's payment window has closed", status: .conflict,
                detail: "it closed at \(Timestamp.format(at)); the order expires and its stock goes back to the sale")
        }
    }
}
