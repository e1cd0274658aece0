#!/usr/bin/env bash
# Issue 23's figures: reconciliation against the simulator's truth. Crest and the simulator as HTTP
# servers on loopback (webhooks, the statement in JSON pages); orders paid and unpaid, some cancelled
# then paid (refunded by Crest); every kind of difference injected per successful payment at --rate
# (refunds lost at 30%). Prints what the first run found against the truth (missed, not injected),
# its time, the second run (nothing to heal) and the audit. The second line is the speed figure:
# 100,000 paid orders, so the statement has over 100,000 charge lines.
#
#   Benchmarks/reconcile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product crest-bench >/dev/null
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(date -u +%F)"
.build/release/crest-bench reconcile --orders 20000 --pay-ratio 0.7 --late-ratio 0.05 --rate 0.015
.build/release/crest-bench reconcile --orders 100000 --pay-ratio 1.0 --late-ratio 0 --rate 0.01 --concurrency 128
