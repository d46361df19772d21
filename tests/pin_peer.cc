// Started as a separate program by the tests:
//   pin_peer <pin>              (syscall_test) open the hash map pinned there, check key 1
//                               holds 100, store 200 at key 2;
//   pin_peer ring <pin> <id> <n>  (ringbuf_test) open the ring buffer pinned there and
//                               output n records {id, seq};
//   pin_peer mkpin <pin>        (pin_root_test) create a hash map holding 1 -> 100 and pin
//                               it there;
//   pin_peer get <pin>          (pin_root_test) open the map pinned there and check that
//                               key 1 holds 100.
// mkpin and get exit with the errno of the failed step (0 on success, 200 for a wrong value).
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sched.h>

#include "bpfmap/map.hpp"
#include "bpfmap/ringbuf.hpp"

namespace {

int produce(const char *pin, uint32_t id, uint32_t n)
{
	bpfmap::Map m;
	bpfmap::RingProducer prod;
	if (bpfmap::Map::open_pinned(pin, m) || bpfmap::RingProducer::open(m.fd(), prod))
		return 3;
	for (uint32_t seq = 0; seq < n; seq++) {
		uint32_t rec[2] = {id, seq};
		while (prod.output(rec, sizeof(rec)) == EAGAIN)
			sched_yield();
	}
	return 0;
}

int make_pinned(const char *pin)
{
	bpfmap::MapSpec spec;
	spec.key_size = 4;
	spec.value_size = 8;
	spec.max_entries = 4;
	bpfmap::Map m;
	if (int err = bpfmap::Map::create(spec, m))
		return err;
	uint32_t k = 1;
	uint64_t v = 100;
	if (int err = m.update(&k, &v))
		return err;
	return m.pin(pin);
}

int check_pinned(const char *pin)
{
	bpfmap::Map m;
	if (int err = bpfmap::Map::open_pinned(pin, m))
		return err;
	uint32_t k = 1;
	uint64_t v = 0;
	return m.lookup(&k, &v) != 0 || v != 100 ? 200 : 0;
}

} // namespace

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "ring") == 0)
		return produce(argv[2], static_cast<uint32_t>(atoi(argv[3])),
			       static_cast<uint32_t>(atoi(argv[4])));
	if (argc == 3 && strcmp(argv[1], "mkpin") == 0)
		return make_pinned(argv[2]);
	if (argc == 3 && strcmp(argv[1], "get") == 0)
		return check_pinned(argv[2]);
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
