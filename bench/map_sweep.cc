// map_bench --sweep: the hash rows across map sizes, for bench/plot.py's ns/op-against-entries
// pictures.
//
// HASH maps of 4-byte keys and 8-byte values, and of 16-byte keys and 64-byte values, at
// 10^3, 10^4, 10^5, 10^6 and 10^7 entries, each with map_bench's usual lookup and update rows
// (every path: ptr, copy, multi, kernel bpf(2), boost) and the kernel's in-program lookup and
// update. The rows are map_bench's own (register_config), so a sweep point and the same row
// of a normal run measure the same thing. --sweep=MAX stops at MAX entries: --sweep=100000
// is a quick check of the whole chain, seconds instead of minutes.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "map_bench.h"

namespace {

constexpr unsigned long SWEEP_MAX = 10000000;

// --sweep or --sweep=MAX at argv[i]: MAX (SWEEP_MAX for a bare --sweep); 0 for another word.
unsigned long sweep_arg(const char *arg)
{
	if (!strcmp(arg, "--sweep"))
		return SWEEP_MAX;
	if (strncmp(arg, "--sweep=", 8))
		return 0;
	char *end;
	double max = strtod(arg + 8, &end); // 1e5 reads as well as 100000
	if (*end || max < 1000 || max > SWEEP_MAX) {
		fprintf(stderr, "map_bench: %s: MAX is 1000 to %lu entries\n", arg, SWEEP_MAX);
		exit(1);
	}
	return static_cast<unsigned long>(max);
}

} // namespace

bool map_bench::register_sweep(int *argc, char **argv)
{
	unsigned long max = 0;
	int kept = 1;
	for (int i = 1; i < *argc; i++) {
		if (unsigned long m = sweep_arg(argv[i]))
			max = m;
		else
			argv[kept++] = argv[i];
	}
	*argc = kept;
	if (!max)
		return false;
	// Size by size, so that each map is built once and the biggest come last.
	for (unsigned long n = 1000; n <= max; n *= 10)
		for (auto kv : {std::pair{4u, 8u}, std::pair{16u, 64u}})
			register_config(
				{BPF_MAP_TYPE_HASH, static_cast<uint32_t>(n), kv.first, kv.second},
				{op::lookup, op::update});
	return true;
}
