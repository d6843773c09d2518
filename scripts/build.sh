#!/usr/bin/env bash
# Configures and builds wsdrain into build/ with Ninja. Extra arguments go to cmake, e.g.
# -DWSDRAIN_BUILD_TESTS=OFF (the demo: no GoogleTest needed). Configuring again is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" > /dev/null
cmake --build build
