#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with Clang into build-fuzz/ and runs each one, one
# at a time, on a copy of its seed corpus (build-fuzz/corpus/<target>/; the repository's seeds
# are never written to).
#   scripts/fuzz.sh --short   each target for a fixed count from a fixed seed (about 20 s);
#                             part of scripts/test.sh
#   scripts/fuzz.sh --long    each target to 10,000,000 executions, at nice 10 (not in CI)
#   --jobs N                  with --long: N processes (one per core) of 10,000,000 / N
#                             executions each, sharing the corpus; the total is the same
#   --no-build                with either: run what build-fuzz/ holds, without building
#   TARGET...                 with either: only these (fuzz_frame_scanner, fuzz_http_request,
#                             fuzz_config)
# A finding fails the run. Its input is kept in build-fuzz/findings/<target>/; replay it with
# build-fuzz/tests/fuzz/<target> FILE. Each run's output is in build-fuzz/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: scripts/fuzz.sh --short|--long [--jobs N] [--no-build] [TARGET...]" >&2; exit 2; }
all=(fuzz_frame_scanner fuzz_http_request fuzz_config)
mode="" build=1 targets=() jobs=1 want_jobs=0
for arg in "$@"; do
  if ((want_jobs)); then
    [[ "$arg" =~ ^[1-9][0-9]*$ ]] || usage
    jobs=$arg want_jobs=0
    continue
  fi
  case "$arg" in
    --jobs) want_jobs=1 ;;
    --short | --long) mode="$arg" ;;
    --no-build) build=0 ;;
    fuzz_frame_scanner | fuzz_http_request | fuzz_config) targets+=("$arg") ;;
    *) usage ;;
  esac
done
[[ -n "$mode" ]] || usage
((${#targets[@]})) || targets=("${all[@]}")

if ((build)); then
  scripts/deps.sh --fuzz
  if [[ ! -f build-fuzz/build.ninja ]]; then
    cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS=-O1 \
      -DCMAKE_CXX_COMPILER=clang++-14 -DWSDRAIN_BUILD_FUZZERS=ON -DWSDRAIN_BUILD_TESTS=OFF
  fi
  cmake --build build-fuzz --target fuzzers
fi

# libFuzzer's own memory limit is off: when it trips, libFuzzer first prints a heap profile,
# which can take minutes. ASan's hard limit ends the process at once, and the input is saved.
export ASAN_OPTIONS=hard_rss_limit_mb=2048:detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1

# About 20 s each on the CI machine.
declare -A short_runs=([fuzz_frame_scanner]=300000 [fuzz_http_request]=300000 [fuzz_config]=60000)

failed=0
for t in "${targets[@]}"; do
  corpus=$PWD/build-fuzz/corpus/$t findings=$PWD/build-fuzz/findings/$t log=$PWD/build-fuzz/logs/$t-${mode#--}.log
  # A short run starts from the repository's seeds alone, with a fixed seed and count, so that
  # CI runs the same inputs each time and a red run replays; a long run builds on the last one.
  [[ $mode == --short ]] && rm -rf "$corpus"
  mkdir -p "$corpus" "$findings" build-fuzz/logs
  cp tests/fuzz/corpus/"$t"/* "$corpus"/
  args=(-rss_limit_mb=0 -timeout=10 -print_final_stats=1 -artifact_prefix="$findings/")
  [[ -f tests/fuzz/$t.dict ]] && args+=(-dict="$PWD/tests/fuzz/$t.dict")
  if [[ $mode == --short ]]; then
    args+=(-seed=1 -runs="${short_runs[$t]}")
    runner=(timeout --kill-after=10 120)  # a hang is a failure too, never a stuck CI job
  else
    args+=(-runs=$((10000000 / jobs)))
    runner=(nice -n 10)
  fi
  start=$SECONDS
  if ((jobs > 1)); then
    # libFuzzer writes each job's output to fuzz-J.log in the working directory.
    jobdir=$PWD/build-fuzz/logs/$t-jobs
    rm -rf "$jobdir" && mkdir -p "$jobdir"
    status=0
    fuzzer=$PWD/build-fuzz/tests/fuzz/$t
    # libFuzzer copies each job's log into its own output when the job ends: the total comes
    # from the jobs' logs, each counted once.
    (cd "$jobdir" && "${runner[@]}" "$fuzzer" "${args[@]}" -jobs="$jobs" -workers="$jobs" "$corpus" >"$log" 2>&1) ||
      status=$?
    runs=$(cat "$jobdir"/fuzz-*.log | sed -n 's/^stat::number_of_executed_units: *//p' | awk '{ n += $1 } END { print n }')
    if ((status == 0)) && ! grep -q "ERROR: libFuzzer\|SUMMARY: " "$log"; then
      echo "$t: ${runs:-?} executions in $((SECONDS - start)) s ($jobs jobs), no finding"
    else
      echo "$t: FAILED after $((SECONDS - start)) s; the end of $log:"
      tail -n 40 "$log"
      failed=1
    fi
  elif "${runner[@]}" "build-fuzz/tests/fuzz/$t" "${args[@]}" "$corpus" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "$t: ${runs:-?} executions in $((SECONDS - start)) s, no finding"
  else
    echo "$t: FAILED after $((SECONDS - start)) s; the end of $log:"
    tail -n 40 "$log"
    failed=1
  fi
done
exit "$failed"
