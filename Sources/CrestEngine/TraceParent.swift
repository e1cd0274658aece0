import Tracing

/// A trace context as the W3C `traceparent` a job keeps in the store, through the process's
/// instrument: work enqueued under a traced request (an order's payment creation and expiry) runs
/// later in that request's trace. With no tracer bootstrapped there is nothing to keep (`nil`).
enum TraceParent {
    /// The `traceparent` of the current task's context, if it is traced.
    static func current() -> String? {
        guard let context = ServiceContext.current else { return nil }
        var carrier: [String: String] = [:]
        InstrumentationSystem.instrument.inject(context, into: &carrier, using: DictionaryInjector())
        return carrier["traceparent"]
    }

    /// The context a `traceparent` names, for a span to continue.
    static func context(_ traceParent: String) -> ServiceContext {
        var context = ServiceContext.topLevel
        InstrumentationSystem.instrument.extract(["traceparent": traceParent], into: &context, using: DictionaryExtractor())
        return context
    }

    private struct DictionaryInjector: Injector {
        func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
    }

    private struct DictionaryExtractor: Extractor {
        func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
    }
}
