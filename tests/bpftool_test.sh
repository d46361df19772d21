#!/bin/sh
# Debian's bpftool, unmodified, runs one script of map commands for hash, array, percpu
# hash, percpu array, LPM trie, queue, stack, bloom filter and the two ring buffers: on the
# kernel, and under the preload library (as the caller, and as an unprivileged user for
# whom bpf(2) is refused). Everything bpftool prints must be the
# same, except map ids and memlock, which are bpfmap's own.
# With a second argument (tests/btf_map_maker), also a map described by BTF, which bpftool
# prints from the BTF.
# Arguments: <preload library> [btf map maker].
set -eu
preload=$(readlink -f "$1")
maker=$(readlink -f "${2:-}" 2>/dev/null || true)
if ! command -v bpftool >/dev/null 2>&1; then
	echo "SKIP: bpftool is not installed (apt-get install bpftool)"
	exit 0
fi
work=$(mktemp -d)
chmod 755 "$work"
pins=/sys/fs/bpf/bpfmap-bpftool-$$
cleanup() {
	rm -rf "$work"
	[ "$(id -u)" -eq 0 ] && rm -rf "$pins" 2>/dev/null
	return 0
}
trap cleanup EXIT

# The script; $1 is the bpftool command (possibly behind env), output on stdout.
script() {
	bt="$1"
	mkdir "$pins"
	for t in hash array percpu_hash percpu_array; do
		p=$pins/$t
		echo "== $t"
		$bt map create "$p" type "$t" key 4 value 8 entries 16 name "m_$t" 2>&1 || echo "rc=$?"
		$bt map show pinned "$p" 2>&1
		$bt -j map show pinned "$p" 2>&1; echo
		$bt map getnext pinned "$p" 2>&1 || echo "rc=$?"
		$bt map update pinned "$p" key 1 0 0 0 value 1 2 3 4 5 6 7 8 2>&1 || echo "rc=$?"
		# Hash order follows the kernel's random seed: next keys are compared while one
		# key is in the map, and dumps of more keys as sorted sets.
		if [ "${t%hash}" != "$t" ]; then
			$bt map getnext pinned "$p" 2>&1 || echo "rc=$?"
			$bt map getnext pinned "$p" key 1 0 0 0 2>&1 || echo "rc=$?"
			$bt map getnext pinned "$p" key 7 0 0 0 2>&1 || echo "rc=$?"
			echo "## unordered"
		else
			$bt map getnext pinned "$p" 2>&1 || echo "rc=$?"
			$bt map getnext pinned "$p" key 1 0 0 0 2>&1 || echo "rc=$?"
			$bt map getnext pinned "$p" key 15 0 0 0 2>&1 || echo "rc=$?"
			$bt map getnext pinned "$p" key 16 0 0 0 2>&1 || echo "rc=$?"
		fi
		$bt map update pinned "$p" key 2 0 0 0 value 9 9 9 9 0 0 0 1 noexist 2>&1 || echo "rc=$?"
		$bt map update pinned "$p" key 1 0 0 0 value 7 7 7 7 7 7 7 7 noexist 2>&1 || echo "rc=$?"
		$bt map update pinned "$p" key 3 0 0 0 value 3 3 3 3 3 3 3 3 exist 2>&1 || echo "rc=$?"
		$bt map update pinned "$p" key 16 0 0 0 value 3 3 3 3 3 3 3 3 2>&1 || echo "rc=$?"
		$bt map update pinned "$p" key 1 0 0 value 3 3 3 3 3 3 3 3 2>&1 || echo "rc=$?"
		$bt map lookup pinned "$p" key 1 0 0 0 2>&1 || echo "rc=$?"
		$bt -j map lookup pinned "$p" key 2 0 0 0 2>&1 || echo "rc=$?"
		$bt map lookup pinned "$p" key 5 0 0 0 2>&1 || echo "rc=$?"
		$bt map lookup pinned "$p" key 99 0 0 0 2>&1 || echo "rc=$?"
		$bt map dump pinned "$p" 2>&1 || echo "rc=$?"
		$bt -j map dump pinned "$p" 2>&1 || echo "rc=$?"; echo
		echo "## ordered"
		$bt map delete pinned "$p" key 1 0 0 0 2>&1 || echo "rc=$?"
		$bt map delete pinned "$p" key 1 0 0 0 2>&1 || echo "rc=$?"
		id=$($bt -j map show pinned "$p" | sed -n 's/^{"id":\([0-9]*\),.*/\1/p')
		$bt map pin id "$id" "${p}_again" 2>&1 || echo "rc=$?"
		$bt map show pinned "${p}_again" 2>&1 || echo "rc=$?"
		$bt map pin pinned "$p" "${p}_again" 2>&1 || echo "rc=$?"
		$bt -f map show pinned "$p" 2>&1 || echo "rc=$?"
		$bt map freeze pinned "$p" 2>&1 || echo "rc=$?"
		$bt map freeze pinned "$p" 2>&1 || echo "rc=$?"
		$bt map show id "$id" 2>&1 || echo "rc=$?"
		$bt -j map show id "$id" 2>&1 || echo "rc=$?"; echo
		$bt map update id "$id" key 2 0 0 0 value 0 0 0 0 0 0 0 0 2>&1 || echo "rc=$?"
		$bt map delete id "$id" key 2 0 0 0 2>&1 || echo "rc=$?"
		echo "## unordered"
		$bt map dump id "$id" 2>&1 || echo "rc=$?"
		echo "## ordered"
		rm "$p" "${p}_again"
		$bt map show pinned "$p" 2>&1 || echo "rc=$?"
	done
	echo "== lpm_trie"
	p=$pins/lpm
	$bt map create "$p" type lpm_trie key 8 value 8 entries 3 name m_lpm 2>&1 || echo "rc=$?"
	$bt map create "$p" type lpm_trie key 8 value 8 entries 3 name m_lpm flags 1 2>&1 || echo "rc=$?"
	$bt map update pinned "$p" key 24 0 0 0 10 1 2 0 value 1 0 0 0 0 0 0 0 2>&1 || echo "rc=$?"
	$bt map update pinned "$p" key 16 0 0 0 10 1 9 9 value 2 0 0 0 0 0 0 0 2>&1 || echo "rc=$?"
	$bt map update pinned "$p" key 8 0 0 0 10 0 0 0 value 3 0 0 0 0 0 0 0 noexist 2>&1 || echo "rc=$?"
	$bt map update pinned "$p" key 8 0 0 0 10 0 0 0 value 4 0 0 0 0 0 0 0 noexist 2>&1 || echo "rc=$?"
	$bt map update pinned "$p" key 9 0 0 0 10 0 0 0 value 4 0 0 0 0 0 0 0 2>&1 || echo "rc=$?"
	$bt map update pinned "$p" key 33 0 0 0 10 0 0 0 value 4 0 0 0 0 0 0 0 2>&1 || echo "rc=$?"
	$bt map lookup pinned "$p" key 32 0 0 0 10 1 2 3 2>&1 || echo "rc=$?"
	$bt map lookup pinned "$p" key 32 0 0 0 10 1 3 3 2>&1 || echo "rc=$?"
	$bt map lookup pinned "$p" key 32 0 0 0 10 9 3 3 2>&1 || echo "rc=$?"
	$bt map lookup pinned "$p" key 32 0 0 0 11 1 2 3 2>&1 || echo "rc=$?"
	$bt map dump pinned "$p" 2>&1 || echo "rc=$?"
	$bt -j map dump pinned "$p" 2>&1 || echo "rc=$?"; echo
	$bt map getnext pinned "$p" 2>&1 || echo "rc=$?"
	$bt map getnext pinned "$p" key 24 0 0 0 10 1 2 0 2>&1 || echo "rc=$?"
	$bt map getnext pinned "$p" key 8 0 0 0 10 0 0 0 2>&1 || echo "rc=$?"
	$bt map delete pinned "$p" key 16 0 0 0 10 1 0 0 2>&1 || echo "rc=$?"
	$bt map delete pinned "$p" key 16 0 0 0 10 1 0 0 2>&1 || echo "rc=$?"
	$bt map dump pinned "$p" 2>&1 || echo "rc=$?"
	$bt map show pinned "$p" 2>&1 || echo "rc=$?"
	rm "$p"
	for t in queue stack; do
		echo "== $t"
		p=$pins/$t
		$bt map create "$p" type "$t" key 4 value 4 entries 2 name "m_$t" 2>&1 || echo "rc=$?"
		$bt map create "$p" type "$t" key 0 value 4 entries 2 name "m_$t" 2>&1 || echo "rc=$?"
		$bt map peek pinned "$p" 2>&1 || echo "rc=$?"
		$bt map push pinned "$p" value 1 0 0 0 2>&1 || echo "rc=$?"
		$bt map enqueue pinned "$p" value 2 0 0 0 2>&1 || echo "rc=$?"
		$bt map push pinned "$p" value 3 0 0 0 2>&1 || echo "rc=$?"
		$bt map peek pinned "$p" 2>&1 || echo "rc=$?"
		$bt map dump pinned "$p" 2>&1 || echo "rc=$?"
		$bt map pop pinned "$p" 2>&1 || echo "rc=$?"
		$bt map dequeue pinned "$p" 2>&1 || echo "rc=$?"
		$bt map pop pinned "$p" 2>&1 || echo "rc=$?"
		$bt -j map show pinned "$p" 2>&1 || echo "rc=$?"; echo
		rm "$p"
	done
	echo "== bloom_filter"
	p=$pins/bloom
	$bt map create "$p" type bloom_filter key 0 value 4 entries 16 name m_bloom 2>&1 || echo "rc=$?"
	$bt map push pinned "$p" value 1 0 0 0 2>&1 || echo "rc=$?"
	$bt map peek pinned "$p" 2>&1 || echo "rc=$?"
	$bt map pop pinned "$p" 2>&1 || echo "rc=$?"
	$bt map dump pinned "$p" 2>&1 || echo "rc=$?"
	$bt map show pinned "$p" 2>&1 || echo "rc=$?"
	rm "$p"
	for t in ringbuf user_ringbuf; do
		echo "== $t"
		p=$pins/$t
		$bt map create "$p" type "$t" key 0 value 0 entries 3000 name "m_$t" 2>&1 || echo "rc=$?"
		$bt map create "$p" type "$t" key 4 value 0 entries 4096 name "m_$t" 2>&1 || echo "rc=$?"
		$bt map create "$p" type "$t" key 0 value 0 entries 8192 name "m_$t" 2>&1 || echo "rc=$?"
		$bt map show pinned "$p" 2>&1 || echo "rc=$?"
		$bt -j map show pinned "$p" 2>&1 || echo "rc=$?"; echo
		$bt map dump pinned "$p" 2>&1 || echo "rc=$?"
		$bt map getnext pinned "$p" 2>&1 || echo "rc=$?"
		$bt map lookup pinned "$p" key 0 0 0 0 2>&1 || echo "rc=$?"
		$bt map freeze pinned "$p" 2>&1 || echo "rc=$?"
		rm "$p"
	done
	if [ -n "$maker" ]; then
		echo "== btf"
		"$maker" "$pins/btf" 2>&1 || echo "rc=$?"
		$bt map dump pinned "$pins/btf" 2>&1 || echo "rc=$?"
		$bt map show pinned "$pins/btf" 2>&1 || echo "rc=$?"
		rm "$pins/btf"
	fi
	rmdir "$pins"
}

normalize() {
	python3 "$(dirname "$0")/bpftool_normalize.py" "$1" "$pins"
}

# Under the preload: the script, with every bpf command traced.
under_preload() { # output file, trace file, pin root, its owner's uid, then a command prefix
	out=$1 trace=$2 root=$3 uid=$4
	shift 4
	# A pin root must belong to its user (bpfmap refuses one that others may write).
	install -d -m 700 -o "$uid" "$root"
	"$@" env BPFMAP_PIN_ROOT="$root" BPFMAP_TRACE=1 LD_PRELOAD="$preload" \
		pins="$pins" maker="$maker" sh -c "$(script_text)" >"$out.all" 2>&1
	grep -v '^bpfmap-preload: ' "$out.all" >"$out" || true
	grep '^bpfmap-preload: ' "$out.all" >"$trace" || true
	if grep "by kernel" "$trace" | grep -qv "bpf(cmd 5,"; then
		echo "FAIL: bpf commands other than program loads went to the kernel:"
		grep "by kernel" "$trace" | sort | uniq -c
		exit 1
	fi
}

# The function above, as text a child shell can run.
script_text() {
	printf '%s\n' "$(sed -n '/^script() {$/,/^}$/p' "$0")" 'script bpftool'
}

under_preload "$work/preload.out" "$work/preload.trace" "$work/root" "$(id -u)"
echo "preload: $(grep -c "by bpfmap" "$work/preload.trace") bpf commands served by bpfmap"
set --
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null 2>&1; then
	under_preload "$work/nobody.out" "$work/nobody.trace" "$work/nobody-root" 65534 \
		setpriv --reuid=65534 --regid=65534 --clear-groups
	echo "preload as an unprivileged user: $(grep -c "by bpfmap" "$work/nobody.trace") bpf" \
		"commands served by bpfmap"
	set -- nobody
fi

if [ "$(id -u)" -eq 0 ] && ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
	mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
fi
if [ "$(id -u)" -ne 0 ] || ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
	echo "SKIP kernel half: needs root and bpffs at /sys/fs/bpf"
	cat "$work/preload.out"
	exit 0
fi
pins="$pins" maker="$maker" sh -c "$(script_text)" >"$work/kernel.out" 2>&1 || true

fail=0
for run in preload "$@"; do
	normalize "$work/kernel.out" >"$work/kernel.norm"
	normalize "$work/$run.out" >"$work/$run.norm"
	if ! diff -u "$work/kernel.norm" "$work/$run.norm"; then
		echo "FAIL: bpftool output differs (- kernel, + bpfmap $run)"
		fail=1
	fi
done
[ "$fail" -eq 0 ] || exit 1
echo "PASS: $(wc -l <"$work/kernel.out") lines of bpftool output identical on the kernel and" \
	"on bpfmap (preload $*)"
