#!/usr/bin/env bash
# The tree keeps its shape (README "Where things are"):
#  - calls go down: nothing in src/core/ or src/maps/ includes a header of src/syscall/,
#    src/api/, src/interpose/ or src/preload/;
#  - no C or C++ source file is over 1,000 lines;
#  - every map type of the one list has its ops table defined in src/maps/.
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
bad=0
up=$(grep -rnE '#include "(syscall|api|interpose|preload)/' src/core src/maps || true)
if [ -n "$up" ]; then
	echo "core/ or maps/ includes a layer above it:"
	echo "$up"
	bad=1
fi
while read -r n f; do
	[ "$f" = total ] && continue
	if [ "$n" -gt 1000 ]; then
		echo "$f: $n lines (over 1,000)"
		bad=1
	fi
done < <(find src include tests bench examples tools -type f \
	\( -name '*.c' -o -name '*.cc' -o -name '*.h' -o -name '*.hpp' \) -print0 2>/dev/null |
	xargs -0 wc -l)
for ops in $(sed -n 's/^BPFMAP_MAP_TYPE([^,]*, *[0-9]*, *[A-Z_]*, *\([a-z_]*\))$/\1/p' include/bpfmap/map_types.h); do
	if ! grep -qE "^const bpf_map_ops $ops = \{" src/maps/*.cc; then
		echo "map_types.h names $ops, which no file of src/maps/ defines"
		bad=1
	fi
done
[ "$bad" -eq 0 ] && echo "layout: includes go down, no file over 1,000 lines, every listed type has its ops"
exit "$bad"
