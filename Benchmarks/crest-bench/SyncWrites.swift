import ArgumentParser
import CrestCore
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One durable write per batch, three ways, on the disk the store would use: what a batch's sync
/// costs the CPU and the wall clock apart from SQLite (issue 26's batch journal, measured before
/// it is built).
/// - `wal`: `--frames` frames of 4 KB and their headers appended at a cycling offset of a 4 MB file,
///   then `fdatasync` — SQLite's WAL commit of a batch (a batch of orders dirties ≈ 12 pages).
/// - `direct`: one record of `--bytes` (rounded up to 4 KB) appended with `O_DIRECT | O_DSYNC` to a
///   preallocated, already written file — a journal whose appends change no metadata.
/// - `buffered`: the same record through the page cache, then `fdatasync`.
struct SyncWrites: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync",
        abstract:
            "Time one synced write per batch (a WAL commit, a direct journal append, a buffered one); report CPU and wall µs per write."
    )

    enum Mode: String, CaseIterable, ExpressibleByArgument {
        case wal, direct, buffered
    }

    @Option(help: "Writes per mode.") var count = 2_000
    @Option(help: "4 KB pages per WAL commit.") var frames = 12
    @Option(help: "Bytes per journal record.") var bytes = 8_192
    @Option(help: "Modes to run, in order.") var modes: [Mode] = Mode.allCases
    @Option(help: "Directory for the files (default: the temporary directory; it must not be tmpfs).")
    var directory: String?

    private static let page = 4_096
    /// A WAL frame: a page and its 24-byte header.
    private static let walFrame = page + 24
    private static let walFile = 4 << 20
    private static let journalFile = 64 << 20

    func validate() throws {
        guard count >= 1, (1...64).contains(frames), (1...(1 << 20)).contains(bytes) else {
            throw ValidationError("--count ≥ 1, --frames 1…64, --bytes 1…1,048,576")
        }
    }

    func run() throws {
        let base = URL(filePath: directory ?? FileManager.default.temporaryDirectory.path)
            .appending(path: "crest-bench-sync-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: base) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: Self.page)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 7)
        for mode in modes {
            let path = base.appending(path: mode.rawValue).path
            let (cpu, wall) = try measure(mode, path: path, buffer: buffer)
            print(
                "mode=\(mode.rawValue) count=\(count) frames=\(frames) bytes=\(bytes)"
                    + " cpu_us_per_write=\(String(format: "%.1f", cpu * 1e6 / Double(count)))"
                    + " wall_us_per_write=\(String(format: "%.1f", wall.seconds * 1e6 / Double(count)))")
        }
    }

    /// The CPU seconds and wall time of `count` writes of `mode` (the file's preparation excluded).
    private func measure(_ mode: Mode, path: String, buffer: UnsafeMutableRawBufferPointer) throws -> (Double, Duration) {
        let length: Int
        let fileSize: Int
        let descriptor: Int32
        switch mode {
        case .wal:
            length = frames * Self.walFrame
            fileSize = Self.walFile
            descriptor = try Self.check(open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644), "open")
            try Self.check(ftruncate(descriptor, off_t(fileSize)), "ftruncate")
        case .direct, .buffered:
            length = mode == .direct ? (bytes + Self.page - 1) / Self.page * Self.page : bytes
            fileSize = Self.journalFile
            try Self.prepareJournal(path, buffer: buffer)
            let flags = mode == .direct ? O_RDWR | Self.directIO | O_DSYNC : O_RDWR
            descriptor = try Self.check(open(path, flags), "open")
        }
        defer { close(descriptor) }
        guard length <= buffer.count, length <= fileSize else { throw ValidationError("a write larger than its file") }
        let syncs = mode != .direct
        let startedCPU = processCPUSeconds()
        let started = ContinuousClock.now
        var offset = 0
        for _ in 0..<count {
            if offset + length > fileSize { offset = 0 }
            try Self.write(descriptor, buffer, length, at: offset)
            offset += length
            if syncs { try Self.check(fdatasync(descriptor), "fdatasync") }
        }
        return (processCPUSeconds() - startedCPU, ContinuousClock.now - started)
    }

    /// A journal file written through once and synced, so that its appends change no metadata.
    private static func prepareJournal(_ path: String, buffer: UnsafeMutableRawBufferPointer) throws {
        let descriptor = try check(open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644), "open")
        defer { close(descriptor) }
        for offset in stride(from: 0, to: journalFile, by: buffer.count) {
            try write(descriptor, buffer, buffer.count, at: offset)
        }
        try check(fsync(descriptor), "fsync")
    }

    /// `O_DIRECT`, which Glibc's Swift module leaves out (a GNU extension of `fcntl.h`).
    private static var directIO: Int32 {
        #if arch(arm64)
        0o200000
        #else
        0o40000
        #endif
    }

    /// Writes the buffer's first `length` bytes at `offset`, all of them or an error.
    private static func write(_ descriptor: Int32, _ buffer: UnsafeMutableRawBufferPointer, _ length: Int, at offset: Int) throws {
        guard pwrite(descriptor, buffer.baseAddress, length, off_t(offset)) == length else {
            throw ValidationError("pwrite: errno \(errno)")
        }
    }

    @discardableResult
    private static func check(_ result: Int32, _ call: String) throws -> Int32 {
        guard result >= 0 else { throw ValidationError("\(call): errno \(errno)") }
        return result
    }
}
