#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (unit and integration): in the plain
# build, then a short run of each fuzz target (build-fuzz/, Clang), then the suite again under
# AddressSanitizer + UndefinedBehaviorSanitizer and under ThreadSanitizer (each in its own
# build folder).
#   scripts/test.sh           everything; what CI runs
#   scripts/test.sh --quick   the plain build only
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test

run_suite() {  # build folder
  (cd "$1" && ctest --output-on-failure --parallel "$(nproc)" --timeout 300)
}

# The sanitizer builds leave out what no test runs, and keep line tables only (-g1): full
# debug info makes Beast's coroutines much slower to compile, and reports need only lines.
sanitized_build() {  # build folder, build type, flags
  cmake -S . -B "$1" -G Ninja -DCMAKE_BUILD_TYPE="$2" -DCMAKE_CXX_FLAGS="$3" -DWSDRAIN_BUILD_TOOLS=OFF \
    -DCMAKE_CXX_FLAGS_DEBUG=-g1 -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" >/dev/null
  cmake --build "$1"
}
phase() { echo "== $1 (at $((SECONDS / 60)) min $((SECONDS % 60)) s)"; }

scripts/build.sh -DWSDRAIN_BUILD_TESTS=ON
phase "tests"
run_suite build
[[ "${1:-}" == "--quick" ]] && exit 0

phase "fuzzing: a short run of each libFuzzer target (scripts/fuzz.sh --long is the long one)"
scripts/fuzz.sh --short

phase "tests under AddressSanitizer and UndefinedBehaviorSanitizer"
sanitized_build build-asan Debug "-O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run_suite build-asan

phase "tests under ThreadSanitizer"
sanitized_build build-tsan RelWithDebInfo "-fsanitize=thread"
TSAN_OPTIONS=halt_on_error=1 run_suite build-tsan
phase "done"
