import CrestCore
import Foundation

/// One progress reading, taken a few times per second while the load runs.
package struct ProgressReading: Sendable {
    package var elapsed: Duration
    /// Attempts answered per second since the previous reading.
    package var rate: Double
    package var attempts: Int
    package var accepted: Int
    /// 5xx answers and unanswered attempts so far.
    package var errors: Int
    /// p99 of the attempts answered since the previous reading, ms.
    package var recentP99: Double
}

/// Where a run tells what it is doing.
package protocol LoadProgress: Sendable {
    /// How often `reading` is wanted.
    var interval: Duration { get }
    func reading(_ reading: ProgressReading)
    /// A phase begins or something worth a line happened.
    func note(_ text: String)
}

/// Progress on standard error: one line rewritten in place on a terminal, a plain line per
/// reading (every few seconds) otherwise — so standard output stays free for the report.
package struct ConsoleProgress: LoadProgress {
    package let interactive: Bool
    package let interval: Duration

    package init(interactive: Bool = isatty(STDERR_FILENO) == 1) {
        self.interactive = interactive
        interval = interactive ? .milliseconds(250) : .seconds(5)
    }

    package func reading(_ reading: ProgressReading) {
        let line = String(
            format: "%6.1fs  %8.0f req/s  accepted orders %d  attempts %d  errors %d  p99 %.1f ms", reading.elapsed.seconds, reading.rate,
            reading.accepted, reading.attempts, reading.errors, reading.recentP99)
        write(interactive ? "\r\u{1B}[2K" + line : line + "\n")
    }

    package func note(_ text: String) {
        write(interactive ? "\r\u{1B}[2K" + text + "\n" : text + "\n")
    }

    private func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}
