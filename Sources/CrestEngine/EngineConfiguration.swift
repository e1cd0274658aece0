/// Tuning of the engine, passed down from the `crest` executable's options.
package struct EngineConfiguration: Sendable {
    /// How long the batcher waits after the first queued request for more to join its batch,
    /// when fewer than `batchLingerBelow` wait. Zero means "whatever queued while the previous
    /// commit ran": see Benchmarks/RESULTS.md. The default here is zero: tests that move an
    /// injected clock by hand would otherwise wait on it.
    package var batchWindow: Duration
    /// The queue's length from which a batch starts without waiting its window; `nil`: it always
    /// waits (a test's way to gather attempts into one batch).
    package var batchLingerBelow: Int?
    /// The window and threshold `crest serve` and `crest demo` run with: at a moderate rate a
    /// batch of a few orders instead of one, each commit's hand-offs and sync shared; under load
    /// the queue is longer than the threshold and nobody waits.
    package static let servedBatchWindow: Duration = .milliseconds(2)
    package static let servedBatchLingerBelow = 8
    /// The most reservations one store transaction takes.
    package var maxBatchSize: Int
    /// How many refused idempotency keys each sale remembers, to replay their answers.
    package var refusalMemoryPerSale: Int
    /// A sale's stock gate unused this long (no attempt, none in flight) is dropped with its
    /// memory — tens of MB after a big crowd — and loaded again from the store if asked.
    package var gateIdleTimeout: Duration
    /// The job runner: workers, leases, backoff.
    package var jobs: JobRunnerConfiguration
    /// How expiry treats a payment the provider has not settled.
    package var expiry: ExpiryPolicy
    /// The adaptive concurrency limit of order attempts (`WritePathLimit`); `nil`: none.
    package var writePath: WritePathLimitConfiguration?
    /// How often the scheduled reconciliation runs (with a provider); `nil`: never.
    package var reconcileEvery: Duration?
    /// When an order's payment is created at the provider (with a provider).
    package var paymentCreation: PaymentCreation

    package init(
        batchWindow: Duration = .zero, batchLingerBelow: Int? = nil, maxBatchSize: Int = 256, refusalMemoryPerSale: Int = 1_000_000,
        gateIdleTimeout: Duration = .seconds(600), jobs: JobRunnerConfiguration = .init(),
        expiry: ExpiryPolicy = .init(), writePath: WritePathLimitConfiguration? = nil, reconcileEvery: Duration? = nil,
        paymentCreation: PaymentCreation = .order
    ) {
        self.batchWindow = batchWindow
        self.batchLingerBelow = batchLingerBelow
        self.maxBatchSize = maxBatchSize
        self.refusalMemoryPerSale = refusalMemoryPerSale
        self.gateIdleTimeout = gateIdleTimeout
        self.jobs = jobs
        self.expiry = expiry
        self.writePath = writePath
        self.reconcileEvery = reconcileEvery
        self.paymentCreation = paymentCreation
    }
}

/// When an order's payment is created at the provider.
package enum PaymentCreation: String, Sendable, CaseIterable {
    /// By a job moments after the order (one `payment.create-batch` job per reservation batch), so
    /// that every order shows where to pay without being asked; a buyer who comes to the checkout
    /// (`POST /v1/orders/{id}/payment`) first has it created then, ahead of the jobs.
    case order
    /// Only when the buyer comes to the checkout. An order nobody comes to pay costs no provider
    /// call, no record and no question at its expiry (it has no payment to ask about): in a flash
    /// sale most orders are never paid (70% in `crest demo`), and creating their payments was the
    /// largest part of an order's lifecycle (RESULTS). The waiting read (`GET …?wait`) then waits for
    /// a change of status only.
    case checkout
}

/// Before an order with a payment expires, Crest asks the provider how that payment stands.
package struct ExpiryPolicy: Sendable {
    /// A payment still `processing` at the provider holds the expiry back this long past
    /// `expiresAt` (asking again every `processingRecheck`); then the order expires, and a success
    /// after that is refunded.
    package var processingGrace: Duration
    package var processingRecheck: Duration
    /// While the provider cannot be asked, expiry retries (with the job backoff) for this long past
    /// `expiresAt`; then the order expires without the provider's word (a later success is refunded).
    package var unreachableGrace: Duration
    /// Before the expiry, an awaited payment is checked at the provider this long after its
    /// creation, then after pauses that grow with the order's age up to `driftCheckLongest`.
    package var driftCheckFirst: Duration
    package var driftCheckLongest: Duration

    package init(
        processingGrace: Duration = .seconds(120), processingRecheck: Duration = .seconds(5),
        unreachableGrace: Duration = .seconds(600), driftCheckFirst: Duration = .seconds(60),
        driftCheckLongest: Duration = .seconds(300)
    ) {
        self.processingGrace = processingGrace
        self.processingRecheck = processingRecheck
        self.unreachableGrace = unreachableGrace
        self.driftCheckFirst = driftCheckFirst
        self.driftCheckLongest = driftCheckLongest
    }
}
