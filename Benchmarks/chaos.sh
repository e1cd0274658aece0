#!/usr/bin/env bash
# kill -9 mid-sale with payments (created by a job, or at the checkout), on the embedded store and
# on PostgreSQL: `crest psp-sim` with 20% timeouts, 5% errors, duplicated (20%), reordered (20%),
# delayed and dropped (10%) webhooks, late payments (after the window); 50 kills of `crest serve` at
# random moments, each followed by a restart; attempts without an answer sent again with their keys.
# Then the history check (see `crest-bench chaos --help` and Benchmarks/crest-bench/Chaos.swift);
# exits 1 on any violation.
#
#   Benchmarks/chaos.sh                 # both stores, both payment creations, 50 kills each
#   KILLS=5 STORES=sqlite CREATIONS=checkout Benchmarks/chaos.sh
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=${KILLS:-50}
STORES=${STORES:-"sqlite postgres"}
CREATIONS=${CREATIONS:-"order checkout"}
BUILD=${BUILD:-release}
swift build -c "$BUILD" --product crest >/dev/null
swift build -c "$BUILD" --product crest-bench >/dev/null
BIN=$(swift build -c "$BUILD" --show-bin-path)
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB  build: $BUILD"
status=0
for store in $STORES; do
  for creation in $CREATIONS; do
    echo "== $store, payments created at the $creation, $KILLS kills"
    "$BIN/crest-bench" chaos --store "$store" --kills "$KILLS" --buyers $((KILLS * 60)) --stock $((KILLS * 40)) \
      --payment-window 15 --payment-creation "$creation" || status=1
  done
done
exit $status
