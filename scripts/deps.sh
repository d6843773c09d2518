#!/usr/bin/env bash
# Installs the Debian 12 (bookworm) packages wsdrain needs that are not installed yet.
#   scripts/deps.sh          build and run
#   scripts/deps.sh --demo   also what the demo's instructions use (curl, a WebSocket client)
#   scripts/deps.sh --test   also what the tests need
#   scripts/deps.sh --bench  also what the benchmarks need (scripts/soak.sh, tests/bench/)
#   scripts/deps.sh --fuzz   also what the fuzzers need (Clang and its libFuzzer)
set -euo pipefail

packages=(g++ cmake ninja-build pkg-config libboost1.81-dev libyaml-cpp-dev libspdlog-dev
          prometheus-cpp-dev libssl-dev)
case "${1:-}" in
  --demo) packages+=(curl python3 python3-websockets) ;;
  --test) packages+=(libgtest-dev openssl python3 python3-websockets python3-yaml chromium prometheus yamllint systemd
                    golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev debootstrap
                    clang-14 libclang-rt-14-dev libbenchmark-dev) ;;
  --bench) packages+=(libgtest-dev libbenchmark-dev python3 python3-websockets gnuplot-nox valgrind strace) ;;
  --fuzz) packages+=(clang-14 libclang-rt-14-dev) ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "Installing missing Debian packages: ${missing[*]}"
sudo=()
[[ $(id -u) -ne 0 ]] && sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
