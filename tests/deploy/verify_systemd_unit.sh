#!/usr/bin/env bash
# systemd-analyze verify on deploy/systemd/wsdrain.service, pointed at the built binary (verify
# insists that ExecStart exists), and a check that TimeoutStopSec stays above drain.timeout.
# Then the same for deploy/systemd/backend-drain.conf, as a drop-in of a stand-in backend unit.
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

mkdir -p "$work/legacy-ws.service.d"
printf '[Unit]\nDescription=a backend behind wsdrain\n[Service]\nExecStart=/bin/sleep infinity\n' > "$work/legacy-ws.service"
sed "s|/usr/local/bin/wsdrain|$binary|g" "$src/deploy/systemd/backend-drain.conf" > "$work/legacy-ws.service.d/wsdrain.conf"
out=$(SYSTEMD_UNIT_PATH="$work:" systemd-analyze verify --man=no "$work/legacy-ws.service" 2>&1) || { echo "$out"; exit 1; }
if grep -q "legacy-ws" <<< "$out"; then echo "$out"; exit 1; fi
# The drain's own --timeout must stay below the drop-in's TimeoutStopSec.
drop_stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' "$src/deploy/systemd/backend-drain.conf")
drain_wait=$(sed -n 's/^ExecStop=.*--timeout \([0-9]*\)s.*$/\1/p' "$src/deploy/systemd/backend-drain.conf")
if ! [[ "$drop_stop" =~ ^[0-9]+$ && "$drain_wait" =~ ^[0-9]+$ ]] || (( drop_stop <= drain_wait )); then
  echo "backend-drain.conf: TimeoutStopSec ($drop_stop s) must be above the drain's --timeout ($drain_wait s)"; exit 1
fi
echo "drop-in OK: TimeoutStopSec ${drop_stop}s > drain --timeout ${drain_wait}s"
