#!/usr/bin/env bash
# Every benchmark of Benchmarks/RESULTS.md, one after another, each printing its own table.
# Takes about 50 minutes on a 2-core machine after the release build (chaos and the soak are most of it).
#
#   Benchmarks/run-all.sh 2>&1 | tee /tmp/crest-benchmarks.txt
set -euo pipefail
cd "$(dirname "$0")/.."
for script in order-path batch-tuning jobs payments loadtest demo lifecycle tracing postgres postgres-cpu postgres-expiry passes first-passes overload reconcile chaos restart soak; do
  echo
  echo "=== Benchmarks/$script.sh"
  "Benchmarks/$script.sh"
done
