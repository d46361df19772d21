#!/usr/bin/env bash
# The whole test suite: the normal build, then ASan+UBSan, then ThreadSanitizer, then a
# minute of the fuzzer (clang, ASan+UBSan) from its seed corpus.
# Kernel-differential tests compare with the real bpf(2) when run as root, and skip
# (saying why) elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)
# Every C and C++ file as .clang-format has it (scripts/format.sh fixes them).
scripts/format.sh --check

run_suite() { # build-dir, extra cmake args...
  local dir=$1; shift
  echo "=== $dir: $*"
  cmake -S . -B "$dir" -DBPFMAP_BUILD_BENCH=OFF "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
  (cd "$dir" && ctest --output-on-failure -j"$jobs" --timeout 600)
}

run_suite build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  run_suite build-asan -DCMAKE_BUILD_TYPE=Debug -DBPFMAP_SANITIZE=address
# The hash audit after a killed writer holds every bucket lock at once, in index order: more
# than ThreadSanitizer's deadlock detector can track (64), so that detector is off.
TSAN_OPTIONS="halt_on_error=1 detect_deadlocks=0" \
  run_suite build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBPFMAP_SANITIZE=thread
# Call sequences from tests/fuzz/corpus and what libFuzzer makes of them; prints the number
# of executions.
scripts/fuzz.sh 60
