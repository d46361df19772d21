// map_bench: bpfmap's hash, array, LRU, queue, stack and bloom filter maps against the
// kernel's, through the same attrs.
//
// For every (type, max_entries, key/value size) config, one bpfmap map and one kernel map
// are created and filled to max_entries with the same random keys, once: the config is
// built lazily by the first benchmark that needs it and dropped when a benchmark of another
// config asks for its own (benchmarks are registered config by config, so each config is
// built once per run, whatever the repetition count). Timed loops walk a shuffled list of
// present keys, so a 1M-entry map misses in cache as a real workload would.
//
// Paths measured, one op per iteration:
//   ptr    bpfmap program-side ABI: bpfmap_map_lookup_elem / bpfmap_map_update_elem (for a
//          per-CPU map: the caller's CPU value)
//   copy   bpfmap_bpf(BPF_MAP_*_ELEM, attr) -- the bpf(2) convention, value copied out
//          (for a per-CPU map: every possible CPU's value)
//   multi  HASH lookup only: bpfmap_map_lookup_multi, MULTI_KEYS keys per call, each value's
//          first 8 bytes read after the call; one key per iteration (time and items per key)
//   kernel syscall(__NR_bpf, BPF_MAP_*_ELEM, attr)
//   boost  HASH lookup and update only, where Boost 1.81 is installed: the same keys in a
//          boost::unordered_flat_map (bench/peer_flat_map.h), value copied out; a
//          single-threaded, process-private table, to show what a lookup can cost here at all
// Attrs are passed with libbpf's size, offsetofend(union bpf_attr, flags), to both.
// The pointer lookup reads the value's first 8 bytes, so it pays for the value's cache line
// as the copy-out paths do.
//
// Benchmark names: <TYPE>/<entries>/k<key>v<value>/<op>/<path>, e.g. HASH/10000/k4v8/lookup/copy.
// MEM/1GiB/random_read (random_read.cc) is this machine's limit for the multi rows: ns per
// independent 8-byte load from a random line of 1 GiB.
//
// map_bench --sweep[=MAX] runs, instead of all of the above, the HASH lookup and update rows
// (every path, and the kernel's in-program ones) at 10^3 to 10^7 entries, or to MAX
// (map_sweep.cc); bench/run_sweep.sh runs it for bench/plot.py. The JSON's context names
// the CPU (cpu_model) and the kernel.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <linux/bpf.h>
#include <memory>
#include <random>
#include <string>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <vector>

#include "bpfmap/bpfmap.h"
#include "kernel_prog.h"
#include "keys.h"
#include "map_bench.h"
#include "peer_flat_map.h"

namespace {

using kernel_prog::kernel_bpf;
using map_bench::config;
using map_bench::op;

// libbpf's attr size for element commands: offsetofend(union bpf_attr, flags).
constexpr unsigned ELEM_ATTR_SIZE = offsetof(union bpf_attr, flags) + sizeof(__u64);

using bench_keys::mix32;

// ---- kernel availability -------------------------------------------------------------

std::string kernel_probe_error;
bool kernel_probed = false;

bool kernel_available()
{
	if (kernel_probed)
		return kernel_probe_error.empty();
	kernel_probed = true;
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_type = BPF_MAP_TYPE_ARRAY;
	a.key_size = 4;
	a.value_size = 8;
	a.max_entries = 1;
	long fd = kernel_bpf(BPF_MAP_CREATE, &a, offsetof(union bpf_attr, map_extra) + 8);
	if (fd < 0) {
		kernel_probe_error = std::string("bpf(2) unavailable: ") + strerror(errno);
		return false;
	}
	close(static_cast<int>(fd));
	return true;
}

// ---- one config's maps ---------------------------------------------------------------

using create_fn = long (*)(int, union bpf_attr *, unsigned);

long create_raw(create_fn fn, uint32_t type, uint32_t ks, uint32_t vs, uint32_t max, uint32_t flags)
{
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_type = type;
	a.key_size = ks;
	a.value_size = vs;
	a.max_entries = max;
	a.map_flags = flags;
	strncpy(a.map_name, "map_bench", sizeof(a.map_name) - 1);
	return fn(BPF_MAP_CREATE, &a, offsetof(union bpf_attr, map_extra) + 8);
}

int create_map(create_fn fn, const config &c, std::string *err)
{
	// An LRU map gets room to spare, so that filling it with the fixture's keys evicts
	// none of them even when the filling thread moves between CPUs.
	long fd = create_raw(fn, c.type, c.key_size, c.value_size,
			     c.lru() ? 2 * c.entries : c.entries, 0);
	if (fd < 0) {
		*err = std::string("map create failed: ") + strerror(errno);
		return -1;
	}
	return static_cast<int>(fd);
}

struct fixture {
	config cfg;
	std::vector<unsigned char> keys; // entries keys, key_size bytes each, shuffled
	std::vector<unsigned char> value;
	int bfd = -1; // bpfmap map
	bpfmap_map *handle = nullptr;
	int kfd = -1; // kernel map, made on first use
	std::string kerr;
#ifdef BPFMAP_BENCH_BOOST
	std::unique_ptr<peer_map> peer; // made on first use
#endif

	explicit fixture(const config &c)
		: cfg(c)
		, value(c.value_bytes(), 0x5a)
	{
		std::mt19937_64 rng(0x6270666d6170ull ^ c.entries ^ (uint64_t(c.key_size) << 32) ^
				    (uint64_t(c.value_size) << 40) ^ (uint64_t(c.type) << 48));
		keys.resize(size_t(c.entries) * c.key_size);
		// Random keys, distinct by construction: the first 4 bytes are a bijection of
		// the index (hash), or the index itself (array: the only valid keys).
		uint32_t salt = static_cast<uint32_t>(rng());
		for (uint32_t i = 0; i < c.entries; i++) {
			unsigned char *k = &keys[size_t(i) * c.key_size];
			uint32_t head = c.hash() ? mix32(i ^ salt) : i;
			memcpy(k, &head, 4);
			for (uint32_t off = 4; off < c.key_size; off += 8) {
				uint64_t r = rng();
				memcpy(k + off, &r, std::min<uint32_t>(8, c.key_size - off));
			}
		}
		shuffle();

		std::string err;
		bfd = create_map(bpfmap_bpf, c, &err);
		if (bfd < 0) {
			fprintf(stderr, "bpfmap %s: %s\n", c.name().c_str(), err.c_str());
			abort();
		}
		fill(bpfmap_bpf, bfd);
		handle = bpfmap_map_get(bfd);
		if (!handle) {
			perror("bpfmap_map_get");
			abort();
		}
		shuffle(); // lookups walk an order unrelated to the insertion order
		warm_up();
	}

	// Freshly committed memory is slow to reach for a while on these VMs (page-table and
	// host-side effects): without a few passes first, whichever path is timed first looks
	// up to 2x slower at 1M entries than the same path timed later.
	void warm_up()
	{
		uint64_t sum = 0;
		for (int pass = 0; pass < 3; pass++)
			for (uint32_t i = 0; i < cfg.entries; i++)
				if (void *v = bpfmap_map_lookup_elem(handle, key(i)))
					sum += *static_cast<unsigned char *>(v);
		benchmark::DoNotOptimize(sum);
	}

	~fixture()
	{
		if (handle)
			bpfmap_map_put(handle);
		if (bfd >= 0)
			close(bfd);
		if (kfd >= 0)
			close(kfd);
	}

	void shuffle()
	{
		std::mt19937_64 rng(cfg.entries * 7919ull + cfg.value_size);
		std::vector<unsigned char> tmp(cfg.key_size);
		for (size_t i = cfg.entries - 1; i > 0; i--) {
			size_t j = std::uniform_int_distribution<size_t>(0, i)(rng);
			if (i == j)
				continue;
			unsigned char *a = key(i), *b = key(j);
			memcpy(tmp.data(), a, cfg.key_size);
			memcpy(a, b, cfg.key_size);
			memcpy(b, tmp.data(), cfg.key_size);
		}
	}

	unsigned char *key(size_t i) { return &keys[i * cfg.key_size]; }

	// BPF_MAP_UPDATE_BATCH, FILL_BATCH keys per call: a bpf(2) per key took the kernel's
	// 10^7-entry map (the sweep) twice as long to fill. Both maps are filled the same way.
	void fill(create_fn fn, int fd)
	{
		constexpr uint32_t FILL_BATCH = 4096;
		std::vector<unsigned char> values(size_t(FILL_BATCH) * value.size());
		for (size_t off = 0; off < values.size(); off += value.size())
			memcpy(&values[off], value.data(), value.size());
		union bpf_attr a;
		for (uint32_t i = 0; i < cfg.entries; i += FILL_BATCH) {
			memset(&a, 0, sizeof(a));
			a.batch.map_fd = static_cast<uint32_t>(fd);
			a.batch.keys = reinterpret_cast<uintptr_t>(key(i));
			a.batch.values = reinterpret_cast<uintptr_t>(values.data());
			a.batch.count = std::min(FILL_BATCH, cfg.entries - i);
			a.batch.elem_flags = BPF_ANY;
			if (fn(BPF_MAP_UPDATE_BATCH, &a, sizeof(a)) != 0) {
				fprintf(stderr, "%s: fill %s failed at %u: %s\n",
					cfg.name().c_str(), fn == bpfmap_bpf ? "bpfmap" : "kernel",
					i + a.batch.count, strerror(errno));
				abort();
			}
		}
	}

#ifdef BPFMAP_BENCH_BOOST
	// The peer table, made on first use; nullptr for sizes the bench has no peer for.
	peer_map *peer_table()
	{
		if (!peer)
			peer = make_peer(cfg.key_size, cfg.value_size, keys.data(), cfg.entries,
					 value.data());
		return peer.get();
	}
#endif

	// The kernel map, created and filled on first use; -1 with kerr set if unavailable.
	int kernel_fd()
	{
		if (kfd >= 0 || !kerr.empty())
			return kfd;
		if (!kernel_available()) {
			kerr = kernel_probe_error;
			return -1;
		}
		std::string err;
		kfd = create_map(kernel_bpf, cfg, &err);
		if (kfd < 0) {
			kerr = "bpf(2) unavailable: " + err;
			return -1;
		}
		fill(kernel_bpf, kfd);
		return kfd;
	}
};

std::unique_ptr<fixture> current;

fixture &get_fixture(const config &c)
{
	if (!current || !(current->cfg == c)) {
		current.reset(); // one config's maps alive at a time
		current = std::make_unique<fixture>(c);
	}
	return *current;
}

// ---- benchmarks ----------------------------------------------------------------------

enum class path { ptr, copy, kernel, boost, multi };

const char *path_name(path p)
{
	return p == path::ptr	   ? "ptr"
	       : p == path::copy   ? "copy"
	       : p == path::kernel ? "kernel"
	       : p == path::multi  ? "multi"
				   : "boost";
}
const char *op_name(op o)
{
	return o == op::lookup		  ? "lookup"
	       : o == op::lookup_fullattr ? "lookup_fullattr"
	       : o == op::update	  ? "update"
	       : o == op::lookup_batch	  ? "lookup_batch"
	       : o == op::insert_evict	  ? "insert_evict"
					  : "delete_reinsert";
}

void fail(benchmark::State &state, const char *what)
{
	state.SkipWithError((std::string(what) + ": " + strerror(errno)).c_str());
}

#ifdef BPFMAP_BENCH_BOOST
void run_peer(benchmark::State &state, fixture &f, op o)
{
	peer_map *peer = f.peer_table();
	if (!peer) {
		state.SkipWithError("no peer table for these sizes");
		return;
	}
	std::vector<unsigned char> out(f.cfg.value_size), val(f.value);
	bool ok = o == op::lookup ? peer->lookup(state, f.keys.data(), f.cfg.entries, out.data())
				  : peer->update(state, f.keys.data(), f.cfg.entries, val.data());
	if (!ok) {
		state.SkipWithError("a key is missing from the peer table");
		return;
	}
	state.SetItemsProcessed(state.iterations());
	state.counters["entries"] = f.cfg.entries;
}
#endif

// The multi rows: MULTI_KEYS keys per call, taken in the shuffled order and wrapping at the
// end; each iteration counts one key.
constexpr uint32_t MULTI_KEYS = 256;

bool run_multi(benchmark::State &state, fixture &f)
{
	const uint32_t n = f.cfg.entries, ks = f.cfg.key_size;
	void *ptrs[MULTI_KEYS];
	uint32_t i = 0;
	while (state.KeepRunningBatch(MULTI_KEYS)) {
		uint32_t first = std::min(MULTI_KEYS, n - i);
		long found = bpfmap_map_lookup_multi(f.handle, f.keys.data() + size_t(i) * ks,
						     first, ptrs);
		if (first < MULTI_KEYS)
			found += bpfmap_map_lookup_multi(f.handle, f.keys.data(),
							 MULTI_KEYS - first, ptrs + first);
		if (__builtin_expect(found != MULTI_KEYS, 0))
			return false;
		uint64_t sum = 0;
		for (void *v : ptrs) {
			uint64_t w;
			memcpy(&w, v, 8);
			sum += w;
		}
		benchmark::DoNotOptimize(sum);
		i = (i + MULTI_KEYS) % n;
	}
	return true;
}

void run(benchmark::State &state, config c, op o, path p)
{
	fixture &f = get_fixture(c);
#ifdef BPFMAP_BENCH_BOOST
	if (p == path::boost)
		return run_peer(state, f, o);
#endif
	create_fn fn = bpfmap_bpf;
	int fd = f.bfd;
	if (p == path::kernel) {
		fd = f.kernel_fd();
		if (fd < 0) {
			state.SkipWithError(f.kerr.c_str());
			return;
		}
		fn = kernel_bpf;
	}
	const size_t n = c.entries;
	const uint32_t ks = c.key_size;
	unsigned char *keys = f.keys.data();
	std::vector<unsigned char> out(c.value_bytes());
	std::vector<unsigned char> val(f.value);
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_fd = static_cast<uint32_t>(fd);
	a.flags = BPF_ANY;
	size_t i = 0;
	bool ok = true;

	switch (o) {
	case op::lookup:
	case op::lookup_fullattr:
		if (p == path::multi) {
			ok = run_multi(state, f);
		} else if (p == path::ptr) {
			for (auto _ : state) {
				void *v = bpfmap_map_lookup_elem(f.handle, keys + i * ks);
				if (__builtin_expect(!v, 0)) {
					ok = false;
					break;
				}
				uint64_t w;
				memcpy(&w, v, 8);
				benchmark::DoNotOptimize(w);
				if (++i == n)
					i = 0;
			}
		} else {
			a.flags = 0;
			a.value = reinterpret_cast<uintptr_t>(out.data());
			const unsigned size =
				o == op::lookup_fullattr ? sizeof(union bpf_attr) : ELEM_ATTR_SIZE;
			for (auto _ : state) {
				a.key = reinterpret_cast<uintptr_t>(keys + i * ks);
				if (__builtin_expect(fn(BPF_MAP_LOOKUP_ELEM, &a, size) != 0, 0)) {
					ok = false;
					break;
				}
				benchmark::DoNotOptimize(out.data());
				benchmark::ClobberMemory();
				if (++i == n)
					i = 0;
			}
		}
		break;
	case op::update:
		if (p == path::ptr) {
			for (auto _ : state) {
				val[0]++;
				if (__builtin_expect(bpfmap_map_update_elem(f.handle, keys + i * ks,
									    val.data(),
									    BPF_ANY) != 0,
						     0)) {
					ok = false;
					break;
				}
				if (++i == n)
					i = 0;
			}
		} else {
			a.value = reinterpret_cast<uintptr_t>(val.data());
			for (auto _ : state) {
				val[0]++;
				a.key = reinterpret_cast<uintptr_t>(keys + i * ks);
				if (__builtin_expect(
					    fn(BPF_MAP_UPDATE_ELEM, &a, ELEM_ATTR_SIZE) != 0, 0)) {
					ok = false;
					break;
				}
				if (++i == n)
					i = 0;
			}
		}
		break;
	case op::delete_reinsert: {
		union bpf_attr d;
		memset(&d, 0, sizeof(d));
		d.map_fd = static_cast<uint32_t>(fd);
		a.value = reinterpret_cast<uintptr_t>(val.data());
		for (auto _ : state) {
			d.key = a.key = reinterpret_cast<uintptr_t>(keys + i * ks);
			if (__builtin_expect(fn(BPF_MAP_DELETE_ELEM, &d, ELEM_ATTR_SIZE) != 0 ||
						     fn(BPF_MAP_UPDATE_ELEM, &a, ELEM_ATTR_SIZE) !=
							     0,
					     0)) {
				ok = false;
				break;
			}
			if (++i == n)
				i = 0;
		}
		break;
	}
	case op::insert_evict: {
		// Keys never seen before: once the LRU is full, every insert evicts one. Runs last
		// for its map, since it evicts the fixture's keys.
		static uint32_t next = 0x40000000;
		std::vector<unsigned char> key(ks, 0);
		for (auto _ : state) {
			uint32_t k = mix32(next++);
			memcpy(key.data(), &k, 4);
			long r = p == path::ptr
					 ? bpfmap_map_update_elem(f.handle, key.data(), val.data(),
								  BPF_ANY)
					 : (a.key = reinterpret_cast<uintptr_t>(key.data()),
					    a.value = reinterpret_cast<uintptr_t>(val.data()),
					    fn(BPF_MAP_UPDATE_ELEM, &a, ELEM_ATTR_SIZE));
			if (__builtin_expect(r != 0, 0)) {
				ok = false;
				break;
			}
		}
		break;
	}
	case op::lookup_batch: {
		// One call per iteration, BATCH elements asked for; the walk restarts at the end.
		// Reported per element (ns_per_elem): a call returns whole buckets, so fewer.
		constexpr uint32_t BATCH = 256;
		std::vector<unsigned char> bkeys(size_t(BATCH) * ks),
			bvals(size_t(BATCH) * c.value_bytes());
		uint64_t token = 0, elems = 0;
		bool first = true;
		union bpf_attr b;
		for (auto _ : state) {
			memset(&b, 0, sizeof(b));
			b.batch.in_batch = first ? 0 : reinterpret_cast<uintptr_t>(&token);
			b.batch.out_batch = reinterpret_cast<uintptr_t>(&token);
			b.batch.keys = reinterpret_cast<uintptr_t>(bkeys.data());
			b.batch.values = reinterpret_cast<uintptr_t>(bvals.data());
			b.batch.count = BATCH;
			b.batch.map_fd = static_cast<uint32_t>(fd);
			long r = fn(BPF_MAP_LOOKUP_BATCH, &b, sizeof(b));
			if (__builtin_expect(r != 0 && errno != ENOENT, 0)) {
				ok = false;
				break;
			}
			elems += b.batch.count;
			first = r != 0;
		}
		state.counters["ns_per_elem"] = benchmark::Counter(
			static_cast<double>(elems),
			benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
		break;
	}
	}
	if (!ok) {
		fail(state, op_name(o));
		return;
	}
	state.SetItemsProcessed(state.iterations());
	state.counters["entries"] = c.entries;
}

// ---- queue, stack, bloom filter ------------------------------------------------------
//
// Keyless maps get maps of their own per benchmark. push_pop: one push and one pop per
// iteration, so the map stays almost empty. Bloom: push of fresh values into a filter sized
// for entries values, and peek of values pushed before (the full k hashes are computed;
// an absent value may stop at the first clear bit).

enum class kop { push_pop, push, peek };

const char *kop_name(kop o)
{
	return o == kop::push_pop ? "push_pop" : o == kop::push ? "push" : "peek";
}

void run_keyless(benchmark::State &state, config c, kop o, path p)
{
	if (p == path::kernel && !kernel_available()) {
		state.SkipWithError(kernel_probe_error.c_str());
		return;
	}
	create_fn fn = p == path::kernel ? kernel_bpf : bpfmap_bpf;
	long fd = create_raw(fn, c.type, 0, c.value_size, c.entries, 0);
	if (fd < 0) {
		fail(state, "create");
		return;
	}
	bpfmap_map *h = p == path::ptr ? bpfmap_map_get(static_cast<int>(fd)) : nullptr;
	std::vector<unsigned char> val(c.value_size, 0x5a), out(c.value_size);
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_fd = static_cast<uint32_t>(fd);
	auto push = [&](const void *v) {
		if (h)
			return bpfmap_map_push_elem(h, v, 0);
		a.value = reinterpret_cast<uintptr_t>(v);
		return fn(BPF_MAP_UPDATE_ELEM, &a, ELEM_ATTR_SIZE);
	};
	auto take = [&](int cmd) {
		if (h)
			return cmd == BPF_MAP_LOOKUP_ELEM ? bpfmap_map_peek_elem(h, out.data())
							  : bpfmap_map_pop_elem(h, out.data());
		a.value = reinterpret_cast<uintptr_t>(out.data());
		return fn(cmd, &a, ELEM_ATTR_SIZE);
	};
	bool ok = true;
	uint32_t i = 0;
	if (o == kop::peek) // the values peeked are present
		for (uint32_t k = 0; k < c.entries && ok; k++) {
			uint32_t v = mix32(k);
			memcpy(val.data(), &v, 4);
			ok = push(val.data()) == 0;
		}
	for (auto _ : state) {
		if (!ok)
			break;
		uint32_t v = mix32(i);
		memcpy(val.data(), &v, 4);
		switch (o) {
		case kop::push_pop:
			ok = push(val.data()) == 0 && take(BPF_MAP_LOOKUP_AND_DELETE_ELEM) == 0;
			break;
		case kop::push:
			ok = push(val.data()) == 0;
			break;
		case kop::peek: // a bloom filter's peek reads the value it is given
			memcpy(out.data(), val.data(), c.value_size);
			ok = take(BPF_MAP_LOOKUP_ELEM) == 0;
			break;
		}
		if (++i == c.entries)
			i = 0;
	}
	if (h)
		bpfmap_map_put(h);
	close(static_cast<int>(fd));
	if (!ok) {
		fail(state, kop_name(o));
		return;
	}
	state.SetItemsProcessed(state.iterations());
	state.counters["entries"] = c.entries;
}

void register_keyless()
{
	const struct {
		config c;
		kop o;
	} runs[] = {
		{{BPF_MAP_TYPE_QUEUE, 1024, 0, 8}, kop::push_pop},
		{{BPF_MAP_TYPE_STACK, 1024, 0, 8}, kop::push_pop},
		{{BPF_MAP_TYPE_QUEUE, 1024, 0, 64}, kop::push_pop},
		{{BPF_MAP_TYPE_BLOOM_FILTER, 100000, 0, 8}, kop::push},
		{{BPF_MAP_TYPE_BLOOM_FILTER, 100000, 0, 8}, kop::peek},
		{{BPF_MAP_TYPE_BLOOM_FILTER, 100000, 0, 64}, kop::peek},
	};
	for (const auto &r : runs)
		for (path p : {path::kernel, path::copy, path::ptr}) {
			std::string name = r.c.name() + "/" + kop_name(r.o) + "/" + path_name(p);
			benchmark::RegisterBenchmark(name.c_str(), run_keyless, r.c, r.o, p)
				->Unit(benchmark::kNanosecond)
				->UseRealTime();
		}
}

// ---- LPM trie ---------------------------------------------------------------------------
//
// entries random IPv4 prefixes (lengths 8 to 32, most of them /16 to /24), then lookups of
// addresses inside randomly chosen stored prefixes, so every lookup walks to a match; or
// updates that replace the values of randomly chosen stored prefixes.

struct key4 {
	uint32_t prefixlen;
	uint32_t addr; // big endian
};

// Fill an LPM map (made through fn) with c.entries random prefixes; what was stored.
std::vector<key4> lpm_fill(create_fn fn, long fd, const config &c, std::mt19937 &rng)
{
	std::vector<key4> stored;
	std::vector<unsigned char> val(c.value_size, 0x5a);
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_fd = static_cast<uint32_t>(fd);
	for (uint32_t i = 0; i < c.entries; i++) {
		static const uint32_t lens[] = {8, 12, 16, 18, 20, 22, 24, 24, 24, 24, 28, 32};
		uint32_t plen = lens[rng() % 12];
		uint32_t addr = static_cast<uint32_t>(rng()) & (plen == 32 ? ~0u : ~(~0u >> plen));
		key4 k{plen, __builtin_bswap32(addr)};
		a.key = reinterpret_cast<uintptr_t>(&k);
		a.value = reinterpret_cast<uintptr_t>(val.data());
		if (fn(BPF_MAP_UPDATE_ELEM, &a, ELEM_ATTR_SIZE) == 0)
			stored.push_back(k);
	}
	return stored;
}

// 65536 /32 addresses, each inside a randomly chosen stored prefix.
std::vector<key4> lpm_probes(const std::vector<key4> &stored, std::mt19937 &rng)
{
	std::vector<key4> probes(1 << 16);
	for (auto &k : probes) {
		key4 s = stored[rng() % stored.size()];
		uint32_t host =
			s.prefixlen == 32 ? 0 : static_cast<uint32_t>(rng()) & (~0u >> s.prefixlen);
		k = {32, __builtin_bswap32(__builtin_bswap32(s.addr) | host)};
	}
	return probes;
}

void run_lpm(benchmark::State &state, config c, path p, bool replace)
{
	if (p == path::kernel && !kernel_available()) {
		state.SkipWithError(kernel_probe_error.c_str());
		return;
	}
	create_fn fn = p == path::kernel ? kernel_bpf : bpfmap_bpf;
	long fd = create_raw(fn, BPF_MAP_TYPE_LPM_TRIE, 8, c.value_size, c.entries,
			     BPF_F_NO_PREALLOC);
	if (fd < 0) {
		fail(state, "create");
		return;
	}
	std::mt19937 rng(42);
	std::vector<key4> stored = lpm_fill(fn, fd, c, rng);
	std::vector<key4> probes = lpm_probes(stored, rng);
	std::vector<unsigned char> val(c.value_size, 0x5a), out(c.value_size);
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_fd = static_cast<uint32_t>(fd);
	bpfmap_map *h = p == path::ptr ? bpfmap_map_get(static_cast<int>(fd)) : nullptr;
	bool ok = true;
	size_t i = 0;
	if (replace)
		for (auto &k : probes)
			k = stored[rng() % stored.size()];
	a.value = reinterpret_cast<uintptr_t>(replace ? val.data() : out.data());
	for (auto _ : state) {
		const key4 *k = &probes[i];
		if (replace && h) {
			ok = bpfmap_map_update_elem(h, k, val.data(), BPF_ANY) == 0;
		} else if (replace) {
			a.key = reinterpret_cast<uintptr_t>(k);
			ok = fn(BPF_MAP_UPDATE_ELEM, &a, ELEM_ATTR_SIZE) == 0;
		} else if (h) {
			void *v = bpfmap_map_lookup_elem(h, k);
			ok = v != nullptr;
			uint64_t w;
			memcpy(&w, v, 8);
			benchmark::DoNotOptimize(w);
		} else {
			a.key = reinterpret_cast<uintptr_t>(k);
			ok = fn(BPF_MAP_LOOKUP_ELEM, &a, ELEM_ATTR_SIZE) == 0;
		}
		if (__builtin_expect(!ok, 0))
			break;
		i = (i + 1) & (probes.size() - 1);
	}
	if (h)
		bpfmap_map_put(h);
	close(static_cast<int>(fd));
	if (!ok) {
		fail(state, replace ? "update" : "lookup");
		return;
	}
	state.SetItemsProcessed(state.iterations());
	state.counters["entries"] = c.entries;
}

// The kernel's own cost of a map operation from inside a BPF program: the loop of
// kernel_prog::load_probe_loop (INPROG_LOOP random probes from an array map), run with
// BPF_PROG_TEST_RUN with and without the map call; the difference per iteration is the
// op. Reported as the kernel column of the rows "lookup_inprog" and "update_inprog", in
// the counter ns_per_elem.
constexpr int INPROG_LOOP = 1000;

void time_inprog(benchmark::State &state, int probes_fd, uint32_t mask, int target_fd,
		 kernel_prog::probe_op op)
{
	std::string why;
	int full = kernel_prog::load_probe_loop(probes_fd, mask, target_fd, op, INPROG_LOOP, &why);
	int base = kernel_prog::load_probe_loop(probes_fd, mask, target_fd,
						kernel_prog::probe_op::none, INPROG_LOOP, &why);
	double op_ns = 0;
	long runs = 0;
	bool ok = full >= 0 && base >= 0;
	for (auto _ : state) {
		if (!ok)
			break;
		double f = kernel_prog::run_ns(full, 100), b = kernel_prog::run_ns(base, 100);
		ok = f >= 0 && b >= 0;
		op_ns += (f - b) / INPROG_LOOP;
		runs++;
		state.SetIterationTime(f * 100 * 1e-9);
	}
	for (int fd : {full, base})
		if (fd >= 0)
			close(fd);
	if (!ok || !runs) {
		if (why.empty())
			fail(state, "BPF_PROG_TEST_RUN");
		else
			state.SkipWithError(why.c_str());
		return;
	}
	state.counters["ns_per_elem"] = op_ns / static_cast<double>(runs) * 1e-9; // seconds
}

void run_lpm_inprog(benchmark::State &state, config c)
{
	if (!kernel_available()) {
		state.SkipWithError(kernel_probe_error.c_str());
		return;
	}
	long trie = create_raw(kernel_bpf, BPF_MAP_TYPE_LPM_TRIE, 8, c.value_size, c.entries,
			       BPF_F_NO_PREALLOC);
	std::mt19937 rng(42); // the same prefixes and probes as the other LPM rows
	std::vector<key4> probes;
	if (trie >= 0)
		probes = lpm_probes(lpm_fill(kernel_bpf, trie, c, rng), rng);
	long probes_fd = kernel_prog::make_probes(1 << 16, sizeof(key4),
						  [&](uint32_t i) { return &probes[i]; });
	if (trie < 0 || probes_fd < 0)
		fail(state, "create");
	else
		time_inprog(state, static_cast<int>(probes_fd), (1 << 16) - 1,
			    static_cast<int>(trie), kernel_prog::probe_op::lookup);
	for (long fd : {trie, probes_fd})
		if (fd >= 0)
			close(static_cast<int>(fd));
	state.counters["entries"] = c.entries;
}

// The same for the fixture's kernel hash map: probes are its keys (each padded to hold a
// value too, which an update stores), every key about as often.
void run_hash_inprog(benchmark::State &state, config c, kernel_prog::probe_op op)
{
	fixture &f = get_fixture(c);
	int kfd = f.kernel_fd();
	if (kfd < 0) {
		state.SkipWithError(f.kerr.c_str());
		return;
	}
	uint32_t n = 1;
	while (n < c.entries)
		n <<= 1;
	std::vector<unsigned char> probe(std::max(c.key_size, c.value_bytes()));
	long probes_fd =
		kernel_prog::make_probes(n, static_cast<uint32_t>(probe.size()), [&](uint32_t i) {
			memcpy(probe.data(), f.key(i % c.entries), c.key_size);
			return probe.data();
		});
	if (probes_fd < 0) {
		fail(state, "create");
		return;
	}
	time_inprog(state, static_cast<int>(probes_fd), n - 1, kfd, op);
	close(static_cast<int>(probes_fd));
	state.counters["entries"] = c.entries;
}

void register_lpm()
{
	for (uint32_t n : {10000u, 100000u}) {
		config c{BPF_MAP_TYPE_LPM_TRIE, n, 8, 8};
		benchmark::RegisterBenchmark((c.name() + "/lookup_inprog/kernel").c_str(),
					     run_lpm_inprog, c)
			->Unit(benchmark::kNanosecond)
			->UseManualTime()
			->Iterations(20);
		for (bool replace : {false, true})
			for (path p : {path::kernel, path::copy, path::ptr}) {
				std::string name = c.name() + (replace ? "/update/" : "/lookup/") +
						   path_name(p);
				benchmark::RegisterBenchmark(name.c_str(), run_lpm, c, p, replace)
					->Unit(benchmark::kNanosecond)
					->UseRealTime();
			}
	}
}

#ifdef BPFMAP_BENCH_BOOST
constexpr bool have_peer = true;
#else
constexpr bool have_peer = false;
#endif

// The machine in the JSON's context, for the tables and plots made from it: the benchmark
// library records the CPU count and clock, not which CPU or kernel.
void add_machine_context()
{
	char line[256];
	FILE *f = fopen("/proc/cpuinfo", "r");
	while (f && fgets(line, sizeof(line), f)) {
		const char *colon = strchr(line, ':');
		if (strncmp(line, "model name", 10) || !colon)
			continue;
		std::string model = colon + 2;
		model.erase(model.find_last_not_of(" \n") + 1);
		benchmark::AddCustomContext("cpu_model", model);
		break;
	}
	if (f)
		fclose(f);
	struct utsname u;
	if (uname(&u) == 0)
		benchmark::AddCustomContext("kernel", u.release);
}

void register_all()
{
	std::vector<config> configs;
	for (uint32_t n : {10000u, 1000000u}) {
		configs.push_back({BPF_MAP_TYPE_HASH, n, 4, 8});
		configs.push_back({BPF_MAP_TYPE_HASH, n, 16, 64});
	}
	for (uint32_t n : {10000u, 1000000u}) {
		configs.push_back({BPF_MAP_TYPE_ARRAY, n, 4, 8});
		configs.push_back({BPF_MAP_TYPE_ARRAY, n, 4, 64});
	}
	configs.push_back({BPF_MAP_TYPE_PERCPU_HASH, 10000, 4, 8});
	configs.push_back({BPF_MAP_TYPE_PERCPU_ARRAY, 10000, 4, 8});
	configs.push_back({BPF_MAP_TYPE_LRU_HASH, 10000, 4, 8});
	configs.push_back({BPF_MAP_TYPE_LRU_HASH, 1000000, 4, 8});
	configs.push_back({BPF_MAP_TYPE_LRU_PERCPU_HASH, 10000, 4, 8});
	for (const config &c : configs)
		map_bench::register_config(c, {op::lookup, op::lookup_fullattr, op::update,
					       op::delete_reinsert, op::lookup_batch,
					       op::insert_evict});
}

} // namespace

void map_bench::register_config(const config &c, std::initializer_list<op> ops)
{
	for (op o : ops) {
		if (o == op::lookup_fullattr && c.type != BPF_MAP_TYPE_HASH)
			continue;
		if (o == op::delete_reinsert && !c.hash())
			continue;
		if (o == op::insert_evict && !c.lru())
			continue;
		for (path p : {path::kernel, path::copy, path::ptr, path::multi, path::boost}) {
			if ((o == op::delete_reinsert || o == op::lookup_batch ||
			     o == op::lookup_fullattr) &&
			    p == path::ptr)
				continue;
			if (p == path::multi && (c.type != BPF_MAP_TYPE_HASH || o != op::lookup))
				continue;
			if (p == path::boost && !(have_peer && c.type == BPF_MAP_TYPE_HASH &&
						  (o == op::lookup || o == op::update)))
				continue;
			std::string name = c.name() + "/" + op_name(o) + "/" + path_name(p);
			benchmark::RegisterBenchmark(name.c_str(), run, c, o, p)
				->Unit(benchmark::kNanosecond)
				->UseRealTime();
		}
	}
	if (c.type != BPF_MAP_TYPE_HASH && c.type != BPF_MAP_TYPE_LRU_HASH)
		return;
	for (op o : ops) {
		if (o != op::lookup && o != op::update)
			continue;
		auto probe = o == op::lookup ? kernel_prog::probe_op::lookup
					     : kernel_prog::probe_op::update;
		std::string name = c.name() + "/" + op_name(o) + "_inprog/kernel";
		benchmark::RegisterBenchmark(name.c_str(), run_hash_inprog, c, probe)
			->Unit(benchmark::kNanosecond)
			->UseManualTime()
			->Iterations(20);
	}
}

int main(int argc, char **argv)
{
	if (!map_bench::register_sweep(&argc, argv)) {
		register_all();
		register_keyless();
		register_lpm();
	}
	add_machine_context();
	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	current.reset();
	return 0;
}
