#!/usr/bin/env bash
# libbpfmap.so exports exactly its public surface (src/libbpfmap.map): the C ABI of
# include/bpfmap/bpfmap.h, the C++ classes of namespace bpfmap, and the libc functions it
# replaces (src/interpose/interpose.h). Every C function the public header declares is
# among them.
set -euo pipefail
lib=${1:?usage: exports_test.sh LIBBPFMAP_SO HEADER}
header=${2:?usage: exports_test.sh LIBBPFMAP_SO HEADER}
interposed="close close_range closefrom dup2 dup3 mmap mmap64 munmap mremap mprotect epoll_ctl epoll_wait epoll_pwait"
bad=0
exports=$(nm -D --defined-only "$lib" | awk '{print $3}' | sed 's/@.*//')
for s in $exports; do
	case "$s" in
	bpfmap_*) continue ;;
	_ZN6bpfmap* | _ZNK6bpfmap*) continue ;; # bpfmap::...
	esac
	if [[ " $interposed " == *" $s "* ]]; then
		continue
	fi
	echo "exported but not public: $s ($(echo "$s" | c++filt))"
	bad=1
done
for s in $interposed; do
	grep -qx "$s" <<<"$exports" || { echo "not exported: $s (interposed)"; bad=1; }
done
for s in $(grep -oE '\bbpfmap_[a-z_]+\(' "$header" | tr -d '(' | sort -u); do
	grep -qx "$s" <<<"$exports" || { echo "declared in bpfmap.h but not exported: $s"; bad=1; }
done
[ "$bad" -eq 0 ] && echo "exports: $(wc -w <<<"$exports") symbols, all public"
exit "$bad"
