#!/usr/bin/env bash
# Scribbling soak (issue 18): ROUNDS rounds per map type of tests/scribble_test.cc, each a
# fresh map scribbled on for BPFMAP_SCRIBBLE_MS (default 600) while two processes run every
# command on it, then the header-attach sweep once per type; a table of crashes and hangs
# per type at the end. Exit status 1 when any round failed.
#
#   scripts/scribble.sh [ROUNDS] [BUILD_DIR]        ROUNDS default 60, BUILD_DIR default build
#   SCRIBBLE_TYPES="HASH LPM_TRIE" scripts/scribble.sh 20     only these types
#   BPFMAP_SCRIBBLE_SEED=N scripts/scribble.sh 1              replay (see the test's header)
#   SCRIBBLE_NO_BUILD=1 ...                                   use the binary as it is
#
# Every failure's line (type, kind, child, op, seed) and the child's backtrace go to
# BUILD_DIR/scribble-soak.log, the failure lines alone to BUILD_DIR/scribble-failures.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-60}
build=${2:-build}
if [[ -z ${SCRIBBLE_NO_BUILD:-} ]]; then
  cmake -S . -B "$build" -DBPFMAP_BUILD_BENCH=OFF >/dev/null || exit 2
  cmake --build "$build" -j2 --target scribble_test >/dev/null || exit 2
fi
bin=$build/tests/scribble_test
log=$build/scribble-soak.log
: >"$log"
export BPFMAP_SCRIBBLE_FAILURES=$build/scribble-failures.txt
: >"$BPFMAP_SCRIBBLE_FAILURES"
types=${SCRIBBLE_TYPES:-$("$bin" --gtest_list_tests | sed -n 's/^  Rounds\/\([A-Z_]*\).*/\1/p')}

printf '%-24s %6s %6s %6s %6s %6s %6s   %s\n' type rounds failed crash hang exit oob header-attach
status=0
for t in $types; do
  out=$(BPFMAP_SCRIBBLE_ROUNDS=$rounds "$bin" --gtest_filter="Types/Scribble.Rounds/$t:Types/Scribble.HeaderAttach/$t" 2>&1)
  echo "$out" >>"$log"
  r=$(grep -o "SCRIBBLE-SUMMARY type=$t rounds=.*" <<<"$out" | head -1)
  h=$(grep -o "SCRIBBLE-SUMMARY type=$t header-attach.*" <<<"$out" | head -1)
  field() { grep -o " $1=[0-9]*" <<<"$2" | cut -d= -f2; }
  if [[ -z $r ]]; then
    printf '%-24s %s\n' "$t" "no summary (the test binary itself died; see $log)"
    status=1
    continue
  fi
  failed=$(field failed "$r")
  hsum="tries=$(field tries "$h") crash=$(field crash "$h") hang=$(field hang "$h") oob=$(field oob "$h")"
  printf '%-24s %6s %6s %6s %6s %6s %6s   %s\n' "$t" "$(field rounds "$r")" "$failed" \
    "$(field crash "$r")" "$(field hang "$r")" "$(field exit "$r")" "$(field oob "$r")" "$hsum"
  if [[ $failed != 0 ]] || grep -q "FAILED" <<<"$out"; then status=1; fi
done
echo "log: $log, failures: $BPFMAP_SCRIBBLE_FAILURES"
exit $status
