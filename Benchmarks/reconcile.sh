#!/usr/bin/env bash
# Issue 23's figures: reconciliation against the simulator's truth. Crest and the simulator as HTTP
# servers on loopback (webhooks, the statement in JSON pages); orders paid and unpaid, some cancelled
# then paid (refunded by Crest); every kind of difference injected per successful payment at --rate
# (refunds lost at 30%). Prints what the first run found against the truth (missed, not injected),
# its time, the second run (nothing to heal), the operator's resolution of what was reported (each
# checked against the truth) and the audit. The loop is the speed figure: 143,000 orders of which
# 100,100 paid, both books seeded directly (--seeded: the whole path makes a few hundred orders a
# second), so the statement has over 100,000 charge lines; five runs, take the median.
#
#   Benchmarks/reconcile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product crest-bench >/dev/null
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(date -u +%F)"
.build/release/crest-bench reconcile --orders 20000 --pay-ratio 0.7 --late-ratio 0.05 --rate 0.015
for run in 1 2 3 4 5; do
  .build/release/crest-bench reconcile --seeded --orders 143000 --pay-ratio 0.7 --rate 0.015 2>/dev/null | head -1
done
