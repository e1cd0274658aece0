/// What each series of `/metrics` measures: its `# HELP` line, written once here for every
/// metric Crest and Hummingbird make. A test fails on a series without one.
enum MetricsCatalog {
    static func help(for name: String) -> String { entries[name] ?? "" }

    static let entries: [String: String] = [
        // HTTP (Hummingbird's MetricsMiddleware)
        "hb_requests": "HTTP requests answered, by route, method and status code.",
        "http_server_request_duration":
            "Time from a request's arrival to its answer being written, in seconds, by route, method and status code.",
        "http_server_active_requests": "HTTP requests being handled now, by method.",
        // Orders and the write path
        "crest_order_attempts_total":
            "Order attempts by outcome: accepted, replayed, unavailable, write_path_full, or the refusal's reason.",
        "crest_batch_size": "Reservations committed together in one store transaction.",
        "crest_batch_commit_duration_seconds": "Time to commit one batch of reservations to the store, in seconds.",
        "crest_batch_commit_failures_total": "Batches of reservations whose commit failed (each answered 503).",
        "crest_order_stage_seconds":
            "Where placing an order spends its time, in seconds, by stage: admission (the handler's checks), write_path (waiting for a place), gate (the stock gate's decision), batch_wait (until its batch commits), commit (its batch's commit), answer (the HTTP answer built).",
        "crest_order_lifecycle_seconds":
            "An order's life after placement, in seconds from its creation, by stage: payment_created, paid, refunded, cancelled, expired; expiry_late: how long after its payment window an expiry ran.",
        "crest_provider_webhook_lag_seconds": "From a provider event's time to Crest receiving its webhook, in seconds.",
        "crest_merchant_webhook_lag_seconds":
            "From an order event to its delivery to a merchant endpoint (2xx), in seconds, by endpoint.",
        "crest_problems_total":
            "Problems (RFC 9457) answered, by type — the last part of the problem's type URN: errors and refusals by kind (sold-out, invalid-request, unavailable, internal, …).",
        "crest_batch_queue_depth":
            "Order reservations waiting for the next batch (not counting the batch being committed); read when scraped.",
        "crest_postgres_reservation_batches_total":
            "Reservation batches a PostgreSQL node wrote, by path: one_statement (decided on the node's last view of the sale, one statement), locked (the six statements that lock the sale first), one_statement_missed (the view was out of date: nothing written, then locked).",
        "crest_database_timeouts_total":
            "PostgreSQL store calls answered 503 unavailable by timeout, by kind: lease (no connection within --database-wait-ms), answer (no answer within --database-timeout-ms; the connection was closed).",
        "crest_database_connection_waiters":
            "Store calls waiting for a PostgreSQL connection (always 0 on the embedded store); read when scraped.",
        "crest_sale_stock": "A sale's units by state: total, available, reserved, sold.",
        // Jobs
        "crest_jobs": "Jobs in the queue by kind and state (completed jobs are pruned after a day; see crest_job_attempts_total).",
        "crest_job_attempts_total": "Job runs by kind and outcome: completed, snoozed, failed, discarded, released.",
        "crest_job_run_duration_seconds": "Time one job run took, in seconds, by kind.",
        "crest_job_queue_depth": "Jobs that could run now (available, or due and waiting for a retry).",
        "crest_job_oldest_due_age_seconds": "How long the oldest job that could run now has been waiting, in seconds.",
        "crest_jobs_rescued_total": "Jobs taken back from a worker whose lease ran out (a crashed or stalled node).",
        "crest_job_claim_failures_total": "Failed attempts to claim jobs from the store.",
        // The payment provider
        "crest_provider_calls_total":
            "Calls to the payment provider by call and outcome: success, refused (4xx), timeout, connection_error, http_error (5xx, 429), rejected_open (circuit open), rejected_full (bulkhead).",
        "crest_provider_call_duration_seconds": "Time one call to the payment provider took, in seconds, by call.",
        "crest_provider_breaker_state": "The provider circuit breaker: 0 closed, 1 half-open, 2 open.",
        "crest_provider_answers_refused_total":
            "Answers of the payment provider Crest refused to act on, by reason (e.g. payment_id_taken: a payment id another order holds).",
        "crest_write_path_limit":
            "The adaptive limit of order attempts on the write path at once (it follows the commit latency).",
        "crest_write_path_in_flight": "Order attempts on the write path now.",
        "crest_write_path_queue_wait_seconds":
            "Time an order attempt waited for a place on a full write path, in seconds (those that got one).",
        "crest_write_path_refusals_total":
            "Order attempts refused (503 overloaded) by the write path's limit, by reason: queue_full, queue_timeout.",
        "crest_lag_seconds":
            "How late scheduled work started at the last measurement, in seconds, by kind: event_loop, task_pool.",
        "crest_shed_total": "Requests refused (503 shed) to keep capacity for the core flow, by route class: normal, sheddable.",
        "crest_connections_open": "HTTP connections open now.",
        "crest_connections_closed_total":
            "Connections the server closed itself, by reason: over_cap, over_address_cap, header_timeout, body_timeout.",
        "crest_payment_drift_healed_total":
            "Awaited payments whose final status (succeeded, failed) Crest learned by asking the provider before the expiry, their webhook lost, by status.",
        "crest_reconciliation_runs_total": "Reconciliation runs by how they ended: finished, failed.",
        "crest_reconciliation_differences_total":
            "Differences reconciliation found between the provider's statement and Crest's books, by kind and resolution (healed, heal-under-way, reported).",
        "crest_reconciliation_differences_open":
            "Differences reconciliation reported that no operator resolved yet (read from the store when scraped, at most once a minute).",
        "crest_ready": "1 when the store answers (as /readyz), 0 when not; read when scraped.",
        "crest_rate_limited_total": "Order attempts refused for a rate limit (429), by scope: buyer, address, sale.",
        "crest_risk_refusals_total": "Order attempts refused by a risk rule (403), by rule type: buyer, address, velocity.",
        "crest_buyer_pass_refusals_total":
            "Buyer passes refused, by reason: missing, malformed, bad_signature, expired, not_yet_valid, invalid_claims.",
        "crest_provider_webhooks_refused_total":
            "Provider webhooks refused, by reason (e.g. signature_mismatch: check --provider-webhook-secret).",
    ]
}
