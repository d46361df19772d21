#!/bin/sh
# Build map_bench in Release (build-rel) and run its sweep: the HASH lookup and update rows at
# 10^3 to 10^7 entries, JSON into build-rel/bench/sweep.json for bench/plot.py. Extra
# arguments go to map_bench: --sweep=1e5 stops at 100,000 entries, and a
# --benchmark_min_time given here replaces this one. The full sweep took 5 minutes on 2 CPUs
# and 7.5 GB of memory at its peak (the 10^7-entry maps, bpfmap's and the kernel's, the
# kernel's probe array and the boost table side by side).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$ROOT/build-rel"
OUT="$BUILD/bench/sweep.json"

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBPFMAP_BUILD_TESTS=OFF >/dev/null
make -C "$BUILD" -j2 map_bench >/dev/null

"$BUILD/bench/map_bench" \
	--sweep \
	--benchmark_min_time=0.2 \
	--benchmark_repetitions=3 \
	--benchmark_report_aggregates_only=true \
	--benchmark_out="$OUT" \
	--benchmark_out_format=json \
	"$@"

echo "wrote $OUT; pictures: python3 bench/plot.py --sweep $OUT"
