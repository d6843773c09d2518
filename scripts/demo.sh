#!/usr/bin/env bash
# Installs what is missing, builds, and runs the demo: the bundled WebSocket echo backend on
# 127.0.0.1:9000 with wsdrain in front of it on the default config/wsdrain.yaml (listening
# on 127.0.0.1:8080 for the demo). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --demo
scripts/build.sh

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

build/tests/tools/demo_backend --port 9000 --deflate > /dev/null &
pids+=($!)
build/proxy/app/wsdrain --config config/wsdrain.yaml --listen 127.0.0.1:8080 &
pids+=($!)

for _ in $(seq 50); do
  curl -fsS http://127.0.0.1:9901/readyz > /dev/null 2>&1 && break
  sleep 0.1
done

cat <<MSG

wsdrain is running in front of the demo echo backend.

  WebSocket:  python3 -m websockets ws://127.0.0.1:8080/        (type a line; it echoes)
  HTTP:       curl http://127.0.0.1:8080/hello
  Metrics:    curl http://127.0.0.1:9901/metrics
  Readiness:  curl http://127.0.0.1:9901/readyz

Press Ctrl-C to stop.
MSG
wait "${pids[1]}"
