import Foundation

/// Where the time went, from Crest's per-stage histograms in Prometheus' text format
/// (`crest_order_stage_seconds`, `crest_order_lifecycle_seconds`): for each stage its count, and
/// its median and 99th percentile estimated as Prometheus' `histogram_quantile` does (linear
/// within the bucket the rank falls in) — or, where the rank falls past the highest finite bucket,
/// only that it is more than that bound (`histogram_quantile` would answer the bound itself).
package struct StageBreakdown: Sendable, Equatable {
    package struct Stage: Sendable, Equatable {
        package var name: String
        package var count: Int
        /// Seconds; `.infinity` when past `top`.
        package var p50: Double
        package var p99: Double
        /// The highest finite bucket bound.
        package var top: Double
    }

    package var stages: [Stage]

    /// The histogram `metric`'s stages in the order of `order` (others after, by name); a series
    /// without a `stage` label is the stage `unlabeled`, when given.
    package init(metrics text: String, metric: String, order: [String] = [], unlabeled: String? = nil) {
        var buckets: [String: [(le: Double, count: Double)]] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix(metric + "_bucket{") {
            guard let close = line.lastIndex(of: "}"),
                let stage = Self.label("stage", in: line[..<close]) ?? unlabeled,
                let le = Self.label("le", in: line[..<close]).flatMap({ $0 == "+Inf" ? Double.infinity : Double($0) }),
                let count = Double(line[line.index(after: close)...].trimmingCharacters(in: .whitespaces))
            else { continue }
            buckets[stage, default: []].append((le, count))
        }
        stages = buckets.compactMap { name, raw in
            let sorted = raw.sorted { $0.le < $1.le }
            guard let total = sorted.last?.count, total > 0 else { return nil }
            return Stage(
                name: name, count: Int(total), p50: Self.quantile(0.5, sorted), p99: Self.quantile(0.99, sorted),
                top: sorted.last { $0.le.isFinite }?.le ?? 0)
        }.sorted { a, b in
            let (ia, ib) = (order.firstIndex(of: a.name) ?? order.count, order.firstIndex(of: b.name) ?? order.count)
            return ia != ib ? ia < ib : a.name < b.name
        }
    }

    /// `histogram_quantile`: the bucket where the rank falls, linear between its bounds;
    /// `.infinity` when it falls in `+Inf`.
    static func quantile(_ q: Double, _ buckets: [(le: Double, count: Double)]) -> Double {
        guard let total = buckets.last?.count, total > 0 else { return .nan }
        let rank = q * total
        var (lower, below) = (0.0, 0.0)
        for bucket in buckets {
            if bucket.count >= rank {
                guard bucket.le.isFinite else { return .infinity }
                let inBucket = bucket.count - below
                return inBucket > 0 ? lower + (bucket.le - lower) * (rank - below) / inBucket : bucket.le
            }
            (lower, below) = (bucket.le, bucket.count)
        }
        return lower
    }

    static func label(_ name: String, in labels: Substring) -> String? {
        guard let start = labels.range(of: "\(name)=\"") else { return nil }
        let rest = labels[start.upperBound...]
        guard let end = rest.firstIndex(of: "\"") else { return nil }
        return String(rest[..<end])
    }

    /// One line per stage: `gate  1,234  p50 0.08 ms  p99 0.41 ms`.
    package var lines: [String] {
        stages.map {
            "  \($0.name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(String($0.count).leftPadded(9))  p50 \(Self.duration($0.p50, top: $0.top).leftPadded(9))  p99 \(Self.duration($0.p99, top: $0.top).leftPadded(9))"
        }
    }

    static func duration(_ seconds: Double, top: Double) -> String {
        if seconds == .infinity { return "> " + duration(top, top: top) }
        guard seconds.isFinite else { return "-" }
        if seconds < 0.001 { return String(format: "%.0f µs", seconds * 1e6) }
        if seconds < 1 { return String(format: "%.1f ms", seconds * 1e3) }
        return String(format: "%.2f s", seconds)
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
