#!/bin/sh
# Build scale_bench in Release (build-rel) and run it: 1..N processes sharing a pinned map.
# Arguments go to scale_bench (e.g. --types=HASH --entries=10000 --csv scale.csv).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$ROOT/build-rel"

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBPFMAP_BUILD_TESTS=OFF >/dev/null
make -C "$BUILD" -j2 scale_bench >/dev/null

"$BUILD/bench/scale_bench" "$@"
