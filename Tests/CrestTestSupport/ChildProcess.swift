import Foundation
import Synchronization

/// A child process started with `posix_spawn`, for the tests that run `crest`, PostgreSQL's tools
/// and the deploy script — not with Foundation's `Process`.
///
/// Foundation's `Process.run()` (swift-corelibs-foundation, `findMaximumOpenFromProcSelfFD`) reads
/// `/proc/self/fd` with `readdir` and copies each entry's whole 256-byte `d_name`, whatever the
/// name's length. With ~1,350 descriptors open or more — the whole suite holds ~1,500: sockets,
/// SQLite files, event loops — glibc's 32 KiB directory buffer is full, the last entry's copy runs
/// past its end, and a buffer at the top of a malloc heap faults: the "bad pointer in
/// `__memmove_avx_unaligned_erms` under `Process.run()`" that crashed whole test runs. Here the
/// child closes every descriptor above 2 itself (`posix_spawn_file_actions_addclosefrom_np`), so
/// nothing reads the descriptor table.
///
/// The members the tests use have `Process`'s names: `run()`, `isRunning`, `processIdentifier`,
/// `terminate()`, `waitUntilExit()`, `terminationStatus` (the exit status, or the signal's number
/// for a process a signal ended, as `Process` says it). Until it is reaped, the ``Watchdog``
/// signals its process group should the test process die first.
public final class ChildProcess: Sendable {
    /// Where the child's standard output and error go.
    public enum Output: Sendable {
        /// A pipe read on a thread of its own; `receive` gets each chunk, and an empty one at the end.
        case collect(@Sendable (Data) -> Void)
        /// A file (descriptor duplicated into the child).
        case file(FileHandle)
        case discard
    }

    private struct State {
        var pid: pid_t = 0
        var status: Int32?
    }

    public let executable: String
    public let arguments: [String]
    /// The whole environment; `nil`: this process's.
    public let environment: [String: String]?
    public let currentDirectory: String?
    private let output: Output
    /// Its process group is signalled by the ``Watchdog`` should the test process die first.
    private let watched: Bool
    private let state = Mutex(State())
    private let exited = DispatchSemaphore(value: 0)

    public init(
        executable: String, arguments: [String], environment: [String: String]? = nil, currentDirectory: String? = nil,
        output: Output = .discard, watched: Bool = true
    ) {
        self.watched = watched
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.currentDirectory = currentDirectory
        self.output = output
    }

    public var processIdentifier: Int32 { state.withLock { $0.pid } }
    public var isRunning: Bool { state.withLock { $0.pid > 0 && $0.status == nil } }

    public var terminationStatus: Int32 {
        state.withLock { state in
            precondition(state.status != nil, "\(executable) still running")
            return state.status!
        }
    }

    /// SIGTERM; nothing before `run()` (`kill(0, …)` would signal the test's own process group)
    /// nor once reaped (its pid may be another process's by then).
    public func terminate() {
        state.withLock { state in
            if state.pid > 0, state.status == nil { kill(state.pid, SIGTERM) }
        }
    }

    /// Runs `executable` to its end and returns its exit status and everything it printed
    /// (standard output and error, interleaved). Its output goes to a file, not a pipe: a server
    /// it leaves running (`pg_ctl start`, a deploy script) would hold a pipe open. Blocks until it
    /// ends: call it off the concurrency pool (``offPool(_:)``).
    public static func runToEnd(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil, currentDirectory: String? = nil
    ) throws -> (status: Int32, output: String) {
        let log = FileManager.default.temporaryDirectory.appending(path: "crest-child-\(UUID().uuidString).out")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: log) }
        let handle = try FileHandle(forWritingTo: log)
        defer { try? handle.close() }
        let process = ChildProcess(
            executable: executable, arguments: arguments, environment: environment, currentDirectory: currentDirectory,
            output: .file(handle))
        try process.run()
        process.waitUntilExit()
        return (process.terminationStatus, (try? String(contentsOf: log, encoding: .utf8)) ?? "")
    }

    /// Blocks until the child has ended: call it off the concurrency pool (``offPool(_:)``).
    public func waitUntilExit() {
        exited.wait()
        exited.signal()
    }

    /// As `waitUntilExit()`, for at most `timeout`: whether the child has ended.
    public func waitUntilExit(within timeout: Duration) -> Bool {
        let nanoseconds = timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        guard exited.wait(timeout: .now() + .nanoseconds(Int(nanoseconds))) == .success else { return false }
        exited.signal()
        return true
    }

    public func run() throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var pipeEnds: [Int32] = [-1, -1]
        var nullDevice: Int32 = -1
        switch output {
        case .collect:
            guard pipe(&pipeEnds) == 0 else { throw Self.error("pipe") }
            for end in pipeEnds { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
            posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], 1)
            posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], 2)
        case .file(let handle):
            posix_spawn_file_actions_adddup2(&actions, handle.fileDescriptor, 1)
            posix_spawn_file_actions_adddup2(&actions, handle.fileDescriptor, 2)
        case .discard:
            nullDevice = open("/dev/null", O_RDWR | O_CLOEXEC)
            posix_spawn_file_actions_adddup2(&actions, nullDevice, 1)
            posix_spawn_file_actions_adddup2(&actions, nullDevice, 2)
        }
        defer { if nullDevice >= 0 { close(nullDevice) } }
        let stdinNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(stdinNull) }
        posix_spawn_file_actions_adddup2(&actions, stdinNull, 0)
        // glibc's GNU extensions (2.34, 2.29), not visible to Swift's Glibc module: looked up.
        guard let closeFrom = Self.closeFrom, let changeDirectory = Self.changeDirectory else {
            throw Self.error("posix_spawn_file_actions_addclosefrom_np missing", code: ENOSYS)
        }
        _ = closeFrom(&actions, 3)
        if let currentDirectory { _ = changeDirectory(&actions, currentDirectory) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own process group, as `Process` does: a signal to the test's group does not reach it.
        // No signal blocked and every one at its default, as `Process` does too: a child inherits
        // the spawning thread's mask, and the test process's threads block SIGTERM (a `sleep` or a
        // shell started here ignored `terminate()` and the watchdog's SIGTERM).
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let variables = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in variables { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, &attributes, argv, variables)
        if case .collect = output { close(pipeEnds[1]) }
        guard spawned == 0 else {
            if case .collect = output { close(pipeEnds[0]) }
            throw Self.error("posix_spawn \(executable)", code: spawned)
        }
        state.withLock { $0.pid = pid }
        let watch = watched ? Watchdog.shared.registerProcessGroup(pid) : nil
        if case .collect(let receive) = output { Self.read(pipeEnds[0], into: receive) }
        let child = pid
        let reaper = Thread { [self] in
            let pid = child
            // Waited for without reaping it, then reaped under the lock `terminate()` takes: once
            // its pid can be another process's, nothing here signals it.
            var info = siginfo_t()
            while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) == -1, errno == EINTR {}
            watch?.cancel()
            state.withLock { state in
                var status: Int32 = 0
                while waitpid(pid, &status, 0) == -1, errno == EINTR {}
                state.status = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : status & 0x7F
            }
            exited.signal()
        }
        reaper.name = "crest-test-reaper"
        reaper.start()
    }

    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private typealias ChangeDirectory =
        @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32

    private static let closeFrom: CloseFrom? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np")
        .map { unsafeBitCast($0, to: CloseFrom.self) }
    private static let changeDirectory: ChangeDirectory? = dlsym(
        UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addchdir_np"
    ).map { unsafeBitCast($0, to: ChangeDirectory.self) }

    private static func read(_ descriptor: Int32, into receive: @escaping @Sendable (Data) -> Void) {
        let reader = Thread {
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            while true {
                let count = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
                if count > 0 {
                    receive(Data(buffer[..<count]))
                } else if count == -1, errno == EINTR {
                    continue
                } else {
                    break
                }
            }
            close(descriptor)
            receive(Data())
        }
        reader.name = "crest-test-output"
        reader.start()
    }

    private static func error(_ what: String, code: Int32 = errno) -> NSError {
        NSError(
            domain: NSPOSIXErrorDomain, code: Int(code),
            userInfo: [NSLocalizedDescriptionKey: "\(what): \(String(cString: strerror(code)))"])
    }
}
