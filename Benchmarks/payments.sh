#!/usr/bin/env bash
# Issue 4's figures: order-to-paid latency and payments settled per second through the whole loop
# (Crest and `crest psp-sim`'s simulator as HTTP servers on loopback, signed webhooks), with no
# injected fault and with 30% provider timeouts; at light load (8 buyers) and at saturation (64).
#
#   Benchmarks/payments.sh
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product crest-bench >/dev/null
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(date -u +%F)"
.build/release/crest-bench payments --orders 1000 --concurrency 8
.build/release/crest-bench payments --orders 1000 --concurrency 8 --timeout-rate 0.3
.build/release/crest-bench payments --orders 2000 --concurrency 64
.build/release/crest-bench payments --orders 2000 --concurrency 64 --timeout-rate 0.3
