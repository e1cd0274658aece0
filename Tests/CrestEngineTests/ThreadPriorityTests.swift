import CrestConcurrency
import Foundation
import NIOCore
import NIOPosix
import Testing

/// `ThreadPriority`: the event loops of `crest serve --listener-nice` run below the rest of the process.
@Suite("thread priorities of event loops")
struct ThreadPriorityTests {
    @Test("each thread of the group is lowered by the given steps from the process's nice value; other threads keep theirs")
    func lowersTheGroupOnly() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let others = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let process = try ThreadPriorityProbe.processNice()
        let before = try await ThreadPriority.niceValues(of: group)
        #expect(before == [process, process])
        let lowered = try await ThreadPriority.lower(group, by: 3)
        #expect(lowered == [min(19, process + 3), min(19, process + 3)])
        #expect(try await ThreadPriority.niceValues(of: group) == lowered, "read again on each thread")
        #expect(try await ThreadPriority.niceValues(of: others) == [process], "another group's thread is not touched")
        #expect(try ThreadPriorityProbe.processNice() == process, "nor the process's main thread")
        try await group.shutdownGracefully()
        try await others.shutdownGracefully()
    }

    @Test("more steps than the range holds stop at 19, the lowest priority")
    func capsAtTheLowest() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        #expect(try await ThreadPriority.lower(group, by: 40) == [19])
        try await group.shutdownGracefully()
    }
}

enum ThreadPriorityProbe {
    /// The nice value of the process's main thread, from /proc (field 19 of its stat line).
    static func processNice() throws -> Int32 {
        let stat = try String(contentsOfFile: "/proc/self/stat", encoding: .utf8)
        let fields = stat[stat.index(after: try #require(stat.lastIndex(of: ")")))...].split(separator: " ")
        return try #require(Int32(fields[16]))
    }
}
