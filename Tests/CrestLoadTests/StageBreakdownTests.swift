import CrestLoad
import Testing

@Suite("Stage breakdown from Prometheus histograms")
struct StageBreakdownTests {
    static let text = """
        # HELP crest_order_stage_seconds Where placing an order spends its time.
        # TYPE crest_order_stage_seconds histogram
        crest_order_stage_seconds_bucket{stage="gate",le="0.001"} 90
        crest_order_stage_seconds_bucket{stage="gate",le="0.002"} 100
        crest_order_stage_seconds_bucket{stage="gate",le="+Inf"} 100
        crest_order_stage_seconds_sum{stage="gate"} 0.05
        crest_order_stage_seconds_count{stage="gate"} 100
        crest_order_stage_seconds_bucket{stage="commit",le="0.001"} 0
        crest_order_stage_seconds_bucket{stage="commit",le="0.01"} 50
        crest_order_stage_seconds_bucket{stage="commit",le="0.1"} 98
        crest_order_stage_seconds_bucket{stage="commit",le="+Inf"} 100
        crest_order_stage_seconds_count{stage="commit"} 100
        crest_order_stage_seconds_bucket{stage="answer",le="0.001"} 0
        crest_order_stage_seconds_bucket{stage="answer",le="+Inf"} 0
        crest_order_lifecycle_seconds_bucket{stage="paid",le="1"} 7
        """

    @Test("quantiles as histogram_quantile estimates them; stages in the order asked; empty stages left out")
    func quantiles() {
        let breakdown = StageBreakdown(metrics: Self.text, metric: "crest_order_stage_seconds", order: ["gate", "commit"])
        #expect(breakdown.stages.map(\.name) == ["gate", "commit"])
        let gate = breakdown.stages[0]
        #expect(gate.count == 100)
        #expect(abs(gate.p50 - 0.001 * 50 / 90) < 1e-9)
        #expect(abs(gate.p99 - (0.001 + 0.001 * 9 / 10)) < 1e-9)
        let commit = breakdown.stages[1]
        #expect(abs(commit.p50 - 0.01) < 1e-9, "the rank falls on the bucket's upper bound")
        // 99 of 100 falls in +Inf: only that it is past the highest finite bound, said so.
        #expect(commit.p99 == .infinity && commit.top == 0.1)
        #expect(breakdown.lines.count == 2 && breakdown.lines[0].contains("gate") && breakdown.lines[0].contains("µs"))
        #expect(breakdown.lines[1].hasSuffix("p99 > 100.0 ms"), "\(breakdown.lines[1])")
    }

    @Test("a histogram without a stage label is one stage, named by the caller")
    func unlabeled() {
        let text = """
            crest_provider_webhook_lag_seconds_bucket{le="1.0"} 3
            crest_provider_webhook_lag_seconds_bucket{le="10.0"} 4
            crest_provider_webhook_lag_seconds_bucket{le="+Inf"} 4
            crest_provider_webhook_lag_seconds_count 4
            """
        let breakdown = StageBreakdown(metrics: text, metric: "crest_provider_webhook_lag_seconds", unlabeled: "lag")
        #expect(breakdown.stages.map(\.name) == ["lag"] && breakdown.stages.first?.count == 4)
        #expect(StageBreakdown(metrics: text, metric: "crest_provider_webhook_lag_seconds").stages.isEmpty)
    }
}
