#!/usr/bin/env bash
# systemd-analyze verify on deploy/systemd/wsdrain.service, pointed at the built binary (verify
# insists that ExecStart exists), and a check that TimeoutStopSec stays above drain.timeout.
#   verify_systemd_unit.sh SOURCE_DIR WSDRAIN_BINARY
set -euo pipefail
src=$1 binary=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s|/usr/local/bin/wsdrain|$binary|g" "$src/deploy/systemd/wsdrain.service" > "$work/wsdrain.service"
out=$(systemd-analyze verify --man=no "$work/wsdrain.service" 2>&1) || { echo "$out"; exit 1; }
# verify exits 0 on some warnings; treat any output about the unit as a failure.
if grep -q "wsdrain.service" <<< "$out"; then echo "$out"; exit 1; fi

stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' "$src/deploy/systemd/wsdrain.service")
drain=$(awk '/^drain:/ {d = 1; next} /^[^ #]/ {d = 0} d && /^  timeout:/ {sub(/s$/, "", $2); print $2}' "$src/config/wsdrain.yaml")
if ! [[ "$stop" =~ ^[0-9]+$ && "$drain" =~ ^[0-9]+$ ]] || (( stop <= drain )); then
  echo "TimeoutStopSec ($stop s) must be above drain.timeout ($drain s)"; exit 1
fi
echo "unit OK: TimeoutStopSec ${stop}s > drain.timeout ${drain}s"
