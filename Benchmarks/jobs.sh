#!/usr/bin/env bash
# Issue 3's benchmarks, in-process on a fresh embedded store (SQLite, WAL, synchronous=FULL):
#  - no-op job burn-down: enqueue JOBS no-op jobs, run them with the default workers (and with 32
#    for comparison), report jobs/s until every one is recorded completed;
#  - expiry: reserve a sale's whole stock (ORDERS orders), move the engine's clock past the payment
#    window, report the time until every unit is available again;
#  - the order batch on the store's writer: batches of 256 reservations committed one after
#    another, each order with the jobs it gets with a provider (payment creation, expiry) and
#    without one (expiry), report the writer's µs per order and each batch's time.
#
#   Benchmarks/jobs.sh
#   JOBS=200000 ORDERS=50000 Benchmarks/jobs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-100000}
ORDERS=${ORDERS:-10000}
swift build -c release --product crest-bench >/dev/null
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(date -u +%F)"
for run in 1 2 3; do .build/release/crest-bench jobs --count "$JOBS"; done
.build/release/crest-bench jobs --count "$JOBS" --workers 32
for run in 1 2 3; do .build/release/crest-bench expiry --orders "$ORDERS"; done
for jobs in creation,expiry expiry; do
  for run in 1 2 3; do .build/release/crest-bench reserve --orders 20000 --batch 256 --jobs "$jobs"; done
done
