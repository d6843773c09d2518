#!/usr/bin/env bash
# The soak benchmark (not in CI): installs what is missing, builds, then runs
# tests/bench/soak.py: the demo echo backend and wsdrain as processes, a few hundred
# WebSocket sessions churning (connect, exchange, close) and a partial drain every minute,
# wsdrain's RSS and open descriptors sampled every 10 s into a CSV and plotted to a PNG.
#   scripts/soak.sh                  30 minutes; results in build/soak/
#   scripts/soak.sh --minutes N      a shorter (or longer) run
#   scripts/soak.sh --out DIR ...    any other option of tests/bench/soak.py (see --help)
# Exits 0 when the lines were flat and no client saw an error.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --bench
scripts/build.sh
exec /usr/bin/python3 tests/bench/soak.py "$@"
