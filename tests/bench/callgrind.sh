#!/usr/bin/env bash
# Instructions wsdrain executes per echoed message (or per upgrade), counted by callgrind: the
# figure that stays put on a noisy machine, to compare a change against.
#   tests/bench/callgrind.sh [BUILD_DIR] [SIZE]       (default: build, 64 bytes)
#   tests/bench/callgrind.sh [BUILD_DIR] upgrades
# One proxy thread under callgrind, the demo backend, and 100 ping-pong sessions of the load
# generator (or 10 loops of connect, upgrade, Close, TCP close). Counting starts after a 2 s
# warm-up (callgrind_control --zero) and ends with a dump after 5 s; the count is divided by
# the round trips the load generator made (each round trip is one frame client to backend and
# one back), or by the upgrades. The profile stays in BUILD_DIR/callgrind/ for
# callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build} size=${2:-64}
out=$build/callgrind
mkdir -p "$out"
rm -f "$out"/callgrind.out*
command -v valgrind > /dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
backend_port=$(free_port) port=$(free_port) admin=$(free_port)

"$build/tests/tools/demo_backend" --port "$backend_port" > "$out/backend.log" 2>&1 &
backend=$!
printf 'threads: 1\nlisten: 127.0.0.1:%s\nadmin: {listen: 127.0.0.1:%s}\nlog: {level: warn}\n' "$port" "$admin" \
  > "$out/wsdrain.yaml"
printf 'upstreams: [{name: app, endpoints: [127.0.0.1:%s]}]\n' "$backend_port" >> "$out/wsdrain.yaml"
valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out.%p" \
  "$build/proxy/app/wsdrain" --config "$out/wsdrain.yaml" > "$out/wsdrain.log" 2>&1 &
proxy=$!
trap 'kill "$proxy" "$backend" 2> /dev/null || true' EXIT
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$admin/readyz" > /dev/null 2>&1 && break
  sleep 0.2
done
if [[ $size == upgrades ]]; then
  load=(upgrades --sessions 10)
else
  load=(pingpong --sessions 100 --size "$size")
fi
"$build/tests/bench/wsdrain_loadgen" "${load[0]}" --port "$port" "${load[@]:1}" --seconds 2 > /dev/null
callgrind_control --zero "$proxy" > /dev/null
"$build/tests/bench/wsdrain_loadgen" "${load[0]}" --port "$port" "${load[@]:1}" --seconds 5 > "$out/run.json"
callgrind_control --dump "$proxy" > /dev/null
kill -TERM "$proxy"
wait "$proxy" || true
kill -TERM "$backend"
wait "$backend" || true
trap - EXIT

key=messages
[[ $size == upgrades ]] && key=upgrades
messages=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$out/run.json" "$key")
profile=$(ls -S "$out"/callgrind.out.* | head -1)  # the dump after the run, not the one at exit
instructions=$(sed -n 's/^summary: *//p' "$profile" | head -1)
python3 - "$instructions" "$messages" "$size" <<'EOF'
import sys
ir, n, size = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if size == "upgrades":
    print(f"{n} upgrades (connect, 101, Close both ways, TCP close), {ir:,} instructions: {ir / n:,.0f} per upgrade")
else:
    print(f"{n} round trips of {size} B messages, {ir:,} instructions: {ir / n:,.0f} per round trip "
          f"({ir / n / 2:,.0f} per relayed message)")
EOF
echo "profile: $profile (callgrind_annotate $profile | head -40)"
