#!/bin/sh
# The kernel's own map selftests, from Debian's linux-source tarball, built against Debian's
# libbpf and run unmodified under the preload library:
#   - test_lpm_map (LPM_TRIE against a naive matcher, IPv4/IPv6, delete, get_next_key order,
#     four threads at once);
#   - test_maps with its map_tests/ batch tests for LPM, array and hash. Its run_all_tests()
#     also calls tests for map types bpfmap does not serve (devmap, sockmap, reuseport
#     array, map-in-map, which load BPF objects): those calls are left out, and listed.
# A trace of test_lpm_map shows that bpfmap, not the kernel, served every map command.
# Exits 77 (skip) when no linux-source tarball is installed.
# Arguments: <preload library>.
set -eu
preload=$1
tarball=$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -1)
if [ -z "$tarball" ]; then
	echo "SKIP: no /usr/src/linux-source-*.tar.xz (apt-get install linux-source)"
	exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
top=$(basename "$tarball" .tar.xz)
sel=$top/tools/testing/selftests/bpf
tar -xJf "$tarball" -C "$work" "$sel/test_lpm_map.c" "$sel/test_maps.c" "$sel/test_maps.h" \
	"$sel/bpf_util.h" "$sel/testing_helpers.h" "$sel/map_tests/lpm_trie_map_batch_ops.c" \
	"$sel/map_tests/array_map_batch_ops.c" "$sel/map_tests/htab_map_batch_ops.c" \
	"$top/tools/include/linux"
src=$work/$sel
echo "selftests from $tarball"

sed -e 's/^\t\(test_devmap(0, NULL);\)/\t\/* not served: \1 *\//' \
	-e 's/^\t\(test_devmap_hash(0, NULL);\)/\t\/* not served: \1 *\//' \
	-e 's/^\t\(test_sockmap(0, NULL);\)/\t\/* not served: \1 *\//' \
	-e 's/^\t\(test_reuseport_array();\)/\t\/* not served: \1 *\//' \
	-e 's/^\t\(test_map_in_map();\)/\t\/* not served: \1 *\//' \
	"$src/test_maps.c" >"$src/test_maps_served.c"
echo "left out of test_maps:"
grep -o 'not served: [a-z_]*' "$src/test_maps_served.c" | sed 's/not served: /  /'
mkdir -p "$work/inc/map_tests"
printf 'DEFINE_TEST(lpm_trie_map_batch_ops)\nDEFINE_TEST(array_map_batch_ops)\nDEFINE_TEST(htab_map_batch_ops)\n' \
	>"$work/inc/map_tests/tests.h"
# Only the sockmap test loads BPF objects through the selftests' helper library.
printf '#include <bpf/libbpf.h>\nint bpf_prog_test_load(const char *f, enum bpf_prog_type t, struct bpf_object **o, int *fd) { return -1; }\n' \
	>"$work/no_objects.c"
incs="-I$work/inc -I$src -I$work/$top/tools/include"
cc -O1 -w -o "$work/test_lpm_map" "$src/test_lpm_map.c" -I"$src" -lbpf -lpthread
cc -O1 -w -o "$work/test_maps" "$src/test_maps_served.c" "$work/no_objects.c" \
	"$src/map_tests/lpm_trie_map_batch_ops.c" "$src/map_tests/array_map_batch_ops.c" \
	"$src/map_tests/htab_map_batch_ops.c" $incs -lbpf -lpthread

run() { # name, then the command
	name=$1
	shift
	mkdir -p "$work/root-$name"
	if ! env BPFMAP_PIN_ROOT="$work/root-$name" LD_PRELOAD="$preload" "$@" >"$work/$name.out" 2>"$work/$name.err"; then
		echo "FAIL: $name"
		tail -20 "$work/$name.out" "$work/$name.err"
		exit 1
	fi
	tail -1 "$work/$name.out"
}

run test_lpm_map env BPFMAP_TRACE=1 "$work/test_lpm_map"
grep -q "^test_lpm: OK" "$work/test_lpm_map.out"
# Map commands: the numbers the preload serves. libbpf's feature probes (PROG_LOAD) may
# go on to the kernel; no map command may.
map_cmds=" 0 1 2 3 4 6 7 12 14 15 21 22 24 25 26 27 "
for cmd in $(sed -n 's/.*bpf(cmd \([0-9]*\),.* by kernel.*/\1/p' "$work/test_lpm_map.err"); do
	case "$map_cmds" in *" $cmd "*)
		echo "FAIL: map command $cmd went to the kernel"
		exit 1
		;;
	esac
done
served=$(grep -c "by bpfmap" "$work/test_lpm_map.err" || true)
echo "test_lpm_map: $served bpf() calls served by bpfmap"
[ "$served" -gt 1000 ]

run test_maps "$work/test_maps"
grep -q "^test_maps: OK" "$work/test_maps.out"
grep -E "^test_.*:PASS" "$work/test_maps.out" | sed 's/^/  /'
