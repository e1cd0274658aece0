import ArgumentParser
import CrestCore
import CrestHTTP
import Foundation

/// The rate limiter's memory and time under a crowd of distinct buyers: every attempt of a new
/// buyer takes a bucket, and the table must stay within its cap (`--rate-limit-keys`).
struct Limiter: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "limiter",
        abstract: "Feed the rate limiter 10⁶ distinct buyers: resident memory before and after, buckets held, ns per check.")

    @Option(help: "Distinct buyers, one attempt each.") var buyers = 1_000_000
    @Option(help: "Buckets each scope tracks at most (crest serve's --rate-limit-keys).") var keys = 200_000

    func run() async throws {
        var limits = AdmissionLimits()
        limits.perBuyer = RateLimit(rate: 10, burst: 20)
        limits.trackedKeys = keys
        let limiter = RateLimiter(limits: limits, clock: SystemClock())
        let sale = SaleID.make()
        // The names first, so that their memory is not counted as the limiter's.
        let names = (0..<buyers).map { "buyer-\($0)-\(UUID().uuidString.prefix(8))" }
        let before = Self.residentMegabytes()
        let started = ContinuousClock.now
        for name in names { _ = try limiter.check(buyer: name, sale: sale) }
        let elapsed = ContinuousClock.now - started
        let after = Self.residentMegabytes()
        print(
            """
            buyers=\(buyers) keys=\(keys) held=\(limiter.tracked.buyers) \
            rss_before_mb=\(String(format: "%.1f", before)) rss_after_mb=\(String(format: "%.1f", after)) \
            limiter_mb=\(String(format: "%.1f", after - before)) \
            ns_per_check=\(String(format: "%.0f", elapsed.seconds / Double(buyers) * 1e9))
            """)
    }

    /// VmRSS of this process, in MB.
    static func residentMegabytes() -> Double {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
    }
}
