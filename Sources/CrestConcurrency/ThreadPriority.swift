import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Linux thread priorities (nice values): a thread `n` steps nicer than another gets about
/// 1.25⁻ⁿ of its share of a busy core, and all of an idle one.
///
/// Used to run the public port's event loops below the rest of the process (`crest serve
/// --listener-nice`, as nginx's `worker_priority` does for a whole worker): under a crowd, the
/// loops that read and refuse its requests yield the cores to the work of the requests already
/// admitted — the store's writer, the placements, jobs, the operations port — and take every
/// cycle left over. Raising a nice value needs no privilege; lowering it again would.
package enum ThreadPriority {
    /// Lowers each thread of `group` to `steps` nice values below the process's own (at most 19,
    /// the lowest); returns each thread's nice value afterwards. Throws if a thread's value cannot
    /// be read or set.
    package static func lower(_ group: MultiThreadedEventLoopGroup, by steps: Int32) async throws -> [Int32] {
        precondition(steps >= 0, "a thread's priority is only lowered")
        // The process's value is its main thread's: the caller's thread may be one whose value
        // libdispatch set from a queue's QoS.
        let target = min(19, try niceValue(of: getpid()) + steps)
        var results: [Int32] = []
        for loop in group.makeIterator() {
            results.append(
                try await loop.submit {
                    let thread = try currentThreadID()
                    try setNiceValue(of: thread, to: target)
                    return try niceValue(of: thread)
                }.get())
        }
        return results
    }

    /// The nice value of each of `group`'s threads.
    package static func niceValues(of group: MultiThreadedEventLoopGroup) async throws -> [Int32] {
        var results: [Int32] = []
        for loop in group.makeIterator() {
            results.append(try await loop.submit { try niceValue(of: currentThreadID()) }.get())
        }
        return results
    }

    /// The nice value of the thread `id` (a thread id, or the process id for its main thread).
    static func niceValue(of id: Int32) throws -> Int32 {
        // -1 is a nice value too: only errno tells a failure.
        errno = 0
        let value = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(id))
        guard errno == 0 else { throw ThreadPriorityError(operation: "read the nice value of thread \(id)", code: errno) }
        return value
    }

    static func setNiceValue(of id: Int32, to value: Int32) throws {
        guard setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(id), value) == 0 else {
            throw ThreadPriorityError(operation: "set the nice value of thread \(id) to \(value)", code: errno)
        }
    }

    /// The kernel's id of the calling thread (Swift's Glibc has no `gettid`): the last part of the
    /// `/proc/thread-self` link, `<pid>/task/<tid>`.
    static func currentThreadID() throws -> Int32 {
        var buffer = [CChar](repeating: 0, count: 64)
        let length = readlink("/proc/thread-self", &buffer, buffer.count - 1)
        guard length > 0 else { throw ThreadPriorityError(operation: "read /proc/thread-self", code: errno) }
        let link = String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let last = link.split(separator: "/").last, let id = Int32(last) else {
            throw ThreadPriorityError(operation: "read a thread id in /proc/thread-self (\(link))", code: 0)
        }
        return id
    }
}

/// A thread's priority that could not be read or changed.
package struct ThreadPriorityError: Error, CustomStringConvertible {
    package var operation: String
    package var code: Int32

    package var description: String {
        code == 0 ? "cannot \(operation)" : "cannot \(operation): \(String(cString: strerror(code)))"
    }
}
