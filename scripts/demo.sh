#!/usr/bin/env bash
# Installs what is missing, builds, and runs the demo: the bundled WebSocket echo backend on
# 127.0.0.1:9000 with wsdrain in front of it on the default config/wsdrain.yaml (listening
# on 127.0.0.1:8080 for the demo). On a terminal it then offers to show a drain: 20 demo
# clients connect, `wsdrain drain --wait` shows the progress, and the clients report how
# each session ended. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --demo
scripts/build.sh -DWSDRAIN_BUILD_TESTS=OFF  # the demo needs no test framework

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

build/tests/tools/demo_backend --port 9000 --deflate > /dev/null &
pids+=($!)
build/proxy/app/wsdrain --config config/wsdrain.yaml --listen 127.0.0.1:8080 --log-level warn &
proxy=$!
pids+=("$proxy")

for _ in $(seq 50); do
  curl -fsS http://127.0.0.1:9901/readyz > /dev/null 2>&1 && break
  sleep 0.1
done

cat <<MSG

wsdrain is running in front of the demo echo backend.

  WebSocket:  python3 -m websockets ws://127.0.0.1:8080/        (type a line; it echoes)
  HTTP:       curl http://127.0.0.1:8080/hello
  Metrics:    curl http://127.0.0.1:9901/metrics
  Drain:      build/proxy/app/wsdrain drain --wait               (or: kill -TERM $proxy)
  Status:     build/proxy/app/wsdrain status

MSG

if [[ -t 0 ]]; then
  read -r -p "Press Enter to watch a drain of 20 demo sessions (Ctrl-C to stop): " _
  clients_out=$(mktemp)
  build/tests/tools/demo_clients --sessions 20 ws://127.0.0.1:8080/demo > "$clients_out" &
  clients=$!
  pids+=("$clients")
  sleep 2
  head -1 "$clients_out"
  echo "Draining (drain.spread is $(grep -E '^\s+spread:' config/wsdrain.yaml | awk '{print $2}'))..."
  build/proxy/app/wsdrain drain --wait
  wait "$clients" || true
  tail -n +2 "$clients_out"
  rm -f "$clients_out"
  echo
  build/proxy/app/wsdrain status
  echo
  echo "wsdrain stays up, drained (new requests get 503), until Ctrl-C."
fi
echo "Press Ctrl-C to stop."
wait "$proxy"
