#!/bin/sh
# Build map_bench in Release (build-rel), run it with JSON output, print the ratio table.
# Extra arguments go to map_bench (e.g. --benchmark_filter=HASH/10000); the JSON goes to
# $BENCH_OUT if set, else build-rel/bench/map_bench.json.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$ROOT/build-rel"
OUT="${BENCH_OUT:-$BUILD/bench/map_bench.json}"

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBPFMAP_BUILD_TESTS=OFF >/dev/null
make -C "$BUILD" -j2 map_bench >/dev/null

"$BUILD/bench/map_bench" \
	--benchmark_min_time=0.2 \
	--benchmark_repetitions=3 \
	--benchmark_report_aggregates_only=true \
	--benchmark_out="$OUT" \
	--benchmark_out_format=json \
	"$@"

echo
python3 "$ROOT/bench/ratios.py" "$OUT"
