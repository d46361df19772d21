// Started as a separate program by syscall_test: open the pin given in argv[1], check
// key 1 holds 100, store 200 at key 2.
#include <cstdio>

#include "bpfmap/map.hpp"

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	bpfmap::Map m;
	if (int err = bpfmap::Map::open_pinned(argv[1], m)) {
		fprintf(stderr, "pin_peer: open %s: error %d\n", argv[1], err);
		return 3;
	}
	uint32_t k = 1;
	uint64_t v = 0;
	if (m.lookup(&k, &v) != 0 || v != 100)
		return 4;
	k = 2;
	v = 200;
	return m.update(&k, &v) == 0 ? 0 : 5;
}
