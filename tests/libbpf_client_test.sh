#!/bin/sh
# Runs tests/libbpf_client on the kernel and under the preload library, and requires the
# same output. Under the preload, the trace shows that every map command was served by
# bpfmap. Arguments: <client> <preload library>.
set -eu
client=$1
preload=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root"

# libbpf's feature probes load small programs; those go on to the kernel (where the kernel
# refuses them, the preload answers the one libbpf needs for map names). Every map command
# must be served by bpfmap.
under_preload() { # name, the uid to run as, then a command prefix that runs as it
	name=$1 uid=$2
	shift 2
	# A pin root must belong to its user (bpfmap refuses one that others may write).
	install -d -m 700 -o "$uid" "$work/$name-root"
	"$@" env BPFMAP_PIN_ROOT="$work/$name-root" BPFMAP_TRACE=1 LD_PRELOAD="$preload" \
		"$client" /sys/fs/bpf >"$work/$name.out" 2>"$work/$name.trace"
	map_cmds=" 0 1 2 3 4 6 7 12 14 15 21 22 24 25 26 27 "
	bad=0
	for cmd in $(sed -n 's/.*bpf(cmd \([0-9]*\),.* by kernel.*/\1/p' "$work/$name.trace"); do
		case "$map_cmds" in *" $cmd "*) bad=1 ;; esac
	done
	if [ "$bad" -ne 0 ]; then
		echo "FAIL: map commands went to the kernel:"
		grep "by kernel" "$work/$name.trace" | sort | uniq -c
		exit 1
	fi
	echo "preload ($name): $(grep -c "by bpfmap" "$work/$name.trace" || true) bpf commands" \
		"served by bpfmap; to the kernel (libbpf's probes):"
	grep "by kernel" "$work/$name.trace" | sed 's/ = .*//' | sort | uniq -c || true
}
chmod 755 "$work"
under_preload bpfmap "$(id -u)"
runs=bpfmap
# An unprivileged user, for whom the kernel refuses bpf(2): bpfmap alone.
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null 2>&1; then
	under_preload nobody 65534 setpriv --reuid=65534 --regid=65534 --clear-groups
	runs="bpfmap nobody"
fi

if [ "$(id -u)" -eq 0 ] && ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
	mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
fi
if [ "$(id -u)" -ne 0 ] || ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
	echo "SKIP kernel half: needs root and bpffs at /sys/fs/bpf"
	cat "$work/bpfmap.out"
	exit 0
fi
pin_dir=/sys/fs/bpf/bpfmap-client-$$
mkdir "$pin_dir"
"$client" "$pin_dir" >"$work/kernel.out" 2>&1 || true
rm -rf "$pin_dir"
for run in $runs; do
	if ! diff -u "$work/kernel.out" "$work/$run.out"; then
		echo "FAIL: libbpf client output differs (- kernel, + $run)"
		exit 1
	fi
done
echo "PASS: $(wc -l <"$work/kernel.out") lines identical on the kernel and on bpfmap ($runs)"
