#!/bin/sh
# Build ringbuf_bench in Release (build-rel) and run it: bpfmap's ring buffer producer,
# consumer and end-to-end rates, and the kernel's own in-program reserve + submit (root).
# Extra arguments go to ringbuf_bench (e.g. --benchmark_filter=produce).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$ROOT/build-rel"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBPFMAP_BUILD_TESTS=OFF >/dev/null
make -C "$BUILD" -j2 ringbuf_bench >/dev/null
"$BUILD/bench/ringbuf_bench" --benchmark_min_time=0.3 "$@"
