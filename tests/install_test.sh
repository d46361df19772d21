#!/bin/sh
# Installs the build under test into an empty prefix and builds programs against that prefix
# alone: tests/consumers/consumer.c with the flags of `pkg-config bpfmap` (shared, and with
# --static against a prefix that holds only libbpfmap.a), and tests/consumers/cmake with
# find_package(bpfmap CONFIG). Each program creates, updates, looks up, pins and reopens a
# map under a fresh pin root.
#   install_test.sh <build dir> <tests/consumers> <version>
# CC, CXX and CMAKE name the tools (default cc, c++, cmake). Exit 77 (skip) without pkg-config.
set -eu
build=$1
consumers=$2
version=$3
CC=${CC:-cc}
CXX=${CXX:-c++}
CMAKE=${CMAKE:-cmake}

if ! command -v pkg-config >/dev/null 2>&1; then
	echo "SKIP: no pkg-config (Debian: pkgconf)"
	exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/bpfmap-install.XXXXXX")
# Pin roots on tmpfs where there is one, as in use.
pins=$(mktemp -d /dev/shm/bpfmap-install-pins.XXXXXX 2>/dev/null || mktemp -d "$work/pins.XXXXXX")
trap 'rm -rf "$work" "$pins"' EXIT
export BPFMAP_PIN_ROOT="$pins"
prefix=$work/prefix

fail() {
	echo "FAIL: $*"
	exit 1
}
need() { # path: must exist
	[ -e "$1" ] || fail "not installed: ${1#"$prefix"/}"
}

"$CMAKE" --install "$build" --prefix "$prefix" >"$work/install.log" || {
	cat "$work/install.log"
	fail "cmake --install $build"
}

# The library directory is lib/ here, or lib/<multiarch>/ or lib64/ by GNUInstallDirs' rules.
so=$(find "$prefix" -name libbpfmap.so | head -n 1)
[ -n "$so" ] || fail "no libbpfmap.so under the prefix"
libdir=$(dirname "$so")
echo "installed: libraries in ${libdir#"$prefix"/}"

for h in bpfmap.h map_types.h map.hpp ringbuf.hpp; do
	need "$prefix/include/bpfmap/$h"
done
# libbpfmap.so -> libbpfmap.so.<major> (the soname) -> libbpfmap.so.<version>.
[ -L "$so" ] || fail "libbpfmap.so is not a symlink"
soname=$(readlink "$so")
[ "$soname" = "libbpfmap.so.${version%%.*}" ] || fail "libbpfmap.so -> $soname"
[ -L "$libdir/$soname" ] || fail "$soname is not a symlink"
real=$(readlink "$libdir/$soname")
[ "$real" = "libbpfmap.so.$version" ] || fail "$soname -> $real"
if [ ! -f "$libdir/$real" ] || [ -L "$libdir/$real" ]; then
	fail "$real is not a file"
fi
readelf -d "$libdir/$real" | grep -q "Library soname: \[$soname\]" || fail "$real: soname is not $soname"
need "$libdir/libbpfmap.a"
need "$libdir/libbpfmap-preload.so"
for f in bpfmapConfig.cmake bpfmapConfigVersion.cmake bpfmapTargets.cmake; do
	need "$libdir/cmake/bpfmap/$f"
done
need "$libdir/pkgconfig/bpfmap.pc"
extra=$(find "$prefix/include" -type f ! -path "$prefix/include/bpfmap/*.h" ! -path "$prefix/include/bpfmap/*.hpp")
[ -z "$extra" ] || fail "installed headers that are not public: $extra"

# Every public header stands alone on the installed include directory.
for h in "$prefix"/include/bpfmap/*.h; do
	echo "#include <bpfmap/${h##*/}>" | "$CC" -fsyntax-only -I"$prefix/include" -x c - ||
		fail "${h##*/} alone, in C"
done
for h in "$prefix"/include/bpfmap/*.h "$prefix"/include/bpfmap/*.hpp; do
	echo "#include <bpfmap/${h##*/}>" | "$CXX" -std=c++20 -fsyntax-only -I"$prefix/include" -x c++ - ||
		fail "${h##*/} alone, in C++20"
done

# (a) pkg-config, shared library. bpfmap.pc puts the prefix's lib dir in the program's RUNPATH,
# so it runs as built, with no LD_LIBRARY_PATH.
export PKG_CONFIG_PATH="$libdir/pkgconfig"
[ "$(pkg-config --modversion bpfmap)" = "$version" ] || fail "bpfmap.pc version is not $version"
flags=$(pkg-config --cflags --libs bpfmap)
echo "pkg-config --cflags --libs bpfmap: $flags"
# shellcheck disable=SC2086 # the flags are words
"$CC" -o "$work/c_shared" "$consumers/consumer.c" $flags || fail "C consumer, pkg-config"
readelf -d "$work/c_shared" | grep -q "Shared library: \[$soname\]" || fail "c_shared does not need $soname"
env -u LD_LIBRARY_PATH "$work/c_shared" /sys/fs/bpf/c_shared || fail "C consumer (pkg-config) run"
need "$pins/c_shared"

# (a, static) pkg-config --static against a prefix with libbpfmap.a and no libbpfmap.so, so
# that -lbpfmap can only mean the archive: Libs.private brings the C++ runtime and threads.
static=$work/static
static_libdir=$static/${libdir#"$prefix"/}
mkdir -p "$static_libdir/pkgconfig" "$static/include"
cp -r "$prefix/include/bpfmap" "$static/include/"
cp "$libdir/libbpfmap.a" "$static_libdir/"
cp "$libdir/pkgconfig/bpfmap.pc" "$static_libdir/pkgconfig/"
flags=$(PKG_CONFIG_PATH="$static_libdir/pkgconfig" pkg-config --define-variable=prefix="$static" \
	--static --cflags --libs bpfmap)
echo "pkg-config --static --cflags --libs bpfmap: $flags"
# shellcheck disable=SC2086
"$CC" -o "$work/c_static" "$consumers/consumer.c" $flags || fail "C consumer, pkg-config --static"
if readelf -d "$work/c_static" | grep -q 'Shared library: \[libbpfmap'; then
	fail "c_static needs libbpfmap.so"
fi
# The archive's close() (src/interpose/fdhooks.cc) must replace libc's in the program, as the
# shared library's does, or closing a map fd would not release the map.
nm "$work/c_static" | grep -q ' T close$' || fail "c_static: close() is not bpfmap's"
"$work/c_static" /sys/fs/bpf/c_static || fail "C consumer (pkg-config --static) run"
need "$pins/c_static"

# (b) find_package(bpfmap CONFIG): bpfmap::bpfmap from C and C++, bpfmap::bpfmap_static from
# C. CMake gives the build tree programs an RPATH to the prefix's library directory.
"$CMAKE" -S "$consumers/cmake" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" \
	-DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" >"$work/cmake.log" 2>&1 || {
	cat "$work/cmake.log"
	fail "configuring the CMake consumer"
}
found=$(sed -n 's/^bpfmap_DIR:PATH=//p' "$work/cmake/CMakeCache.txt")
[ "$found" = "$libdir/cmake/bpfmap" ] || fail "find_package(bpfmap) found $found"
"$CMAKE" --build "$work/cmake" >"$work/cmake-build.log" 2>&1 || {
	cat "$work/cmake-build.log"
	fail "building the CMake consumer"
}
"$work/cmake/consumer_shared" /sys/fs/bpf/cmake_shared || fail "CMake consumer (shared) run"
"$work/cmake/consumer_static" /sys/fs/bpf/cmake_static || fail "CMake consumer (static) run"
"$work/cmake/consumer_cxx" || fail "CMake consumer (C++) run"
need "$pins/cmake_shared"
need "$pins/cmake_static"
echo "PASS: installed bpfmap $version builds and runs through pkg-config and find_package"
