#!/usr/bin/env bash
# Issue 5: `crest demo` with its defaults (10,000 units, 200,000 attempts from 100,000 buyers, 30%
# pay, the rest expire after 15 s), timed on a release build. Target: under a minute, exit 0.
#
#   Benchmarks/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${SKIP_BUILD:-}" = 1 ] || swift build -c release --product crest >/dev/null
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
start=$(date +%s.%N)
if "${CREST_BIN:-.build/release/crest}" demo "$@"; then status=0; else status=$?; fi
python3 -c "print(f'crest demo: exit $status after {$(date +%s.%N) - $start:.1f} s')"
