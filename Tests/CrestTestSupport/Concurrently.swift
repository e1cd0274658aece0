import Synchronization

/// Runs `body` for `0..<count` with `width` calls in flight at any moment and returns the results by index.
///
/// `width` workers share the calls: a task group with one child per call spends more time
/// removing finished children (a linear scan each) than the engine spends at 100,000 calls.
public func concurrently<R: Sendable>(
    _ count: Int, width: Int = 2_000, _ body: @escaping @Sendable (Int) async -> R
) async -> [R] {
    let results = ResultSlots<R>(count: count)
    await withDiscardingTaskGroup { group in
        for worker in 0..<min(width, count) {
            group.addTask {
                for index in stride(from: worker, to: count, by: width) {
                    let result = await body(index)
                    results.slots.withLock { $0[index] = result }
                }
            }
        }
    }
    return results.slots.withLock { $0.map { $0! } }
}

/// Results of concurrent calls, one slot per call.
final class ResultSlots<R: Sendable>: Sendable {
    let slots: Mutex<[R?]>
    init(count: Int) { slots = Mutex([R?](repeating: nil, count: count)) }
}

/// A value shared by concurrent test tasks, behind a lock (a class, so escaping closures can capture it).
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    public init(_ value: Value) { mutex = Mutex(value) }

    public func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }

    public var value: Value { mutex.withLock { $0 } }
}
