#!/usr/bin/env bash
# Builds the libFuzzer target (tests/fuzz/bpfmap_fuzz.cc) with clang, ASan and UBSan in
# build-fuzz/, and runs it for SECONDS from the checked-in seeds (tests/fuzz/corpus).
#   scripts/fuzz.sh SECONDS [CORPUS_DIR]
# New inputs go to CORPUS_DIR (default: a temporary directory, removed afterwards). A crash,
# leak, hang (10 s per input) or sanitizer report keeps the reproducer in a temporary
# directory, prints where it is, and exits non-zero; replay it with
#   build-fuzz/tests/fuzz/bpfmap_fuzz -handle_xfsz=0 FILE   (BPFMAP_FUZZ_TRACE=1 for a trace)
# BPFMAP_FUZZ_SCRIBBLE=1 adds writes into live maps' files (see the fuzzer's header).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:?usage: scripts/fuzz.sh SECONDS [CORPUS_DIR]}
corpus=${2:-}

cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBPFMAP_FUZZ=ON -DBPFMAP_BUILD_TESTS=OFF \
  -DBPFMAP_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target bpfmap_fuzz >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/bpfmap-fuzz.XXXXXX")
artifacts=$(mktemp -d "${TMPDIR:-/tmp}/bpfmap-fuzz-crash.XXXXXX")
# Pin roots on tmpfs where there is one, as in use: O_TMPFILE on a disk file system costs
# the fuzzer three quarters of its speed.
pins=$(mktemp -d /dev/shm/bpfmap-fuzz.XXXXXX 2>/dev/null || mktemp -d "$work/pins.XXXXXX")
cleanup() {
  rm -rf "$work" "$pins"
  rmdir "$artifacts" 2>/dev/null || true # kept when it holds a reproducer
}
trap cleanup EXIT
if [ -z "$corpus" ]; then
  corpus=$work/corpus
fi
mkdir -p "$corpus"
log=$work/log

set +e
BPFMAP_FUZZ_TMP=$pins ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
  build-fuzz/tests/fuzz/bpfmap_fuzz -max_total_time="$seconds" -timeout=10 -handle_xfsz=0 \
  -rss_limit_mb=2560 -max_len=4096 -print_final_stats=1 -artifact_prefix="$artifacts/" \
  "$corpus" tests/fuzz/corpus >"$log" 2>&1
rc=$?
set -e

runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
if [ "$rc" -ne 0 ]; then
  tail -n 80 "$log"
  echo "fuzz: FAILED (exit $rc) after ${runs:-?} executions; reproducer in $artifacts:"
  ls -l "$artifacts"
  exit 1
fi
echo "fuzz: ${runs:-0} executions in ${seconds} s (${rate:-0}/s), ${cov:-cov: ?} edges, $(ls "$corpus" | wc -l) inputs in the working corpus, no crash"
