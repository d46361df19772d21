#!/bin/sh
# Build map_bench in Release (build-rel) and run its sweep: the HASH lookup and update rows at
# 10^3 to 10^7 entries, JSON into build-rel/bench/sweep.json for bench/plot.py. Extra
# arguments go to map_bench: --sweep=1e5 stops at 100,000 entries, and a
# --benchmark_min_time given here replaces this one. The full sweep took 5 minutes on 2 CPUs
# and 7.5 GB of memory at its peak (the 10^7-entry maps, bpfmap's and the kernel's, the
# kernel's probe array and the boost table side by side).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_OUT="$ROOT/build-rel/bench/sweep.json" "$ROOT/bench/run.sh" --sweep "$@"
echo "pictures: python3 bench/plot.py --sweep $ROOT/build-rel/bench/sweep.json"
