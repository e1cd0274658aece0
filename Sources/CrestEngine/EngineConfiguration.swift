/// Tuning of the engine, passed down from the `crest` executable's options.
public struct EngineConfiguration: Sendable {
    /// How long the batcher waits after the first queued request for more to join its batch.
    /// Zero means "whatever queued while the previous commit ran": see Benchmarks/RESULTS.md.
    public var batchWindow: Duration
    /// The most reservations one store transaction takes.
    public var maxBatchSize: Int
    /// How many refused idempotency keys each sale remembers, to replay their answers.
    public var refusalMemoryPerSale: Int
    /// The job runner: workers, leases, backoff.
    public var jobs: JobRunnerConfiguration

    public init(
        batchWindow: Duration = .zero, maxBatchSize: Int = 512, refusalMemoryPerSale: Int = 1_000_000,
        jobs: JobRunnerConfiguration = .init()
    ) {
        self.batchWindow = batchWindow
        self.maxBatchSize = maxBatchSize
        self.refusalMemoryPerSale = refusalMemoryPerSale
        self.jobs = jobs
    }
}
