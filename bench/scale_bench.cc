// scale_bench: how a map's throughput grows with the number of PROCESSES that share it.
//
// bpfmap's point is a map shared between processes, as a pinned kernel map is shared between
// programs, so the scaling that matters is across processes, each with its own attach (its
// own mappings and handle), not across threads of one process. Per (type, entries, update %)
// config the parent creates one map (4-byte keys, 8-byte values), fills it with random keys
// (array: every index) and pins it under a private pin root; then for 1..N processes it forks
// that many children. Each child opens the pin (BPF_OBJ_GET, bpfmap_map_get), pins itself to
// one CPU (so N children on N CPUs really run side by side, and a per-CPU map sees a stable
// CPU), walks its keys once untimed (page faults of its fresh mappings), waits on a start
// barrier, and then for --seconds loops over its own shuffled copy of the present keys:
// bpfmap_map_lookup_elem, reading the value's first 8 bytes so that its cache line is paid
// for, except that a steady, deterministic upd% of the ops are instead
// bpfmap_map_update_elem(key, value, BPF_ANY) of a present key. The row is the children's
// summed ops/s, and its ratio to the one-process row of the same config: 2.0 at 2 processes
// is perfect scaling, below 1.0 the processes slow each other down more than they add.
// cpu% is the share of their wall time the children were on a CPU: well below 100, other
// work on the machine took their CPUs and the row says little about the map.
//
// The `kernel` rows run the same loop on a kernel map through bpf(2) with libbpf's attr size;
// the children inherit the parent's fd. They are skipped, with the reason, where bpf(2) is
// not allowed. An LRU map is created with twice the room, so that updates never evict a key
// the loop still looks up (the kernel's LRU takes a fresh node for every update).
//
// Each row is the median of --repeats runs. Usage: scale_bench [--types=HASH,LRU_HASH,...]
// [--entries=10000,1000000] [--updates=0,10,50] [--max-procs=N] [--seconds=S]
// [--repeats=R] [--no-kernel] [--csv FILE]
#include <linux/bpf.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "bpfmap/bpfmap.h"
#include "kernel_prog.h"
#include "keys.h"

namespace {

using kernel_prog::kernel_bpf;

// libbpf's attr size for element commands: offsetofend(union bpf_attr, flags).
constexpr unsigned ELEM_ATTR_SIZE = offsetof(union bpf_attr, flags) + sizeof(__u64);
constexpr unsigned CREATE_ATTR_SIZE = offsetof(union bpf_attr, map_extra) + sizeof(__u64);
// A pin path under /sys/fs/bpf means the same path under bpfmap's pin root (bpfmap.h).
constexpr const char *PIN_PATH = "/sys/fs/bpf/scale_bench";
constexpr const char *PIN_FILE = "scale_bench"; // PIN_PATH's file, in the pin root
constexpr unsigned MAX_PROCS = 128;
constexpr unsigned CLOCK_EVERY = 256;  // ops between two reads of the clock
constexpr int INPROG_LOOP = 1000;      // probes per run of the inprog rows' program
constexpr uint32_t INPROG_REPEAT = 20; // runs per BPF_PROG_TEST_RUN

struct type_name {
	uint32_t type;
	const char *name;
};
constexpr type_name TYPES[] = {
	{BPF_MAP_TYPE_HASH, "HASH"},
	{BPF_MAP_TYPE_LRU_HASH, "LRU_HASH"},
	{BPF_MAP_TYPE_PERCPU_HASH, "PERCPU_HASH"},
	{BPF_MAP_TYPE_ARRAY, "ARRAY"},
};

const char *name_of(uint32_t type)
{
	for (const type_name &t : TYPES)
		if (t.type == type)
			return t.name;
	return "?";
}

struct options {
	std::vector<uint32_t> types;
	std::vector<uint32_t> entries{10000, 1000000};
	std::vector<uint32_t> updates{0, 10, 50};
	unsigned max_procs = 0; // 0: one per CPU we may run on, at least 2
	double seconds = 0.5;
	unsigned repeats = 3;
	bool kernel = true;
	std::string csv;
};

enum class path { bpfmap, kernel, inprog };

const char *path_name(path p)
{
	return p == path::bpfmap ? "bpfmap" : p == path::kernel ? "kernel" : "inprog";
}

// One map of one config, ready for children: the bpfmap map is pinned at PIN_PATH.
struct bench_map {
	uint32_t type, entries;
	std::vector<uint32_t> keys; // the present keys
	uint32_t value_bytes;	    // a value in a syscall buffer (every CPU's, per-CPU)
	int fd = -1;		    // bpfmap: the creator's fd; kernel: inherited by the children
	int prog = -1;		    // inprog: the probe loop program, inherited by the children
};

// What a run's parent and children share: one MAP_SHARED anonymous mapping.
struct shared_page {
	std::atomic<uint32_t> ready; // children attached and warmed up (futex word)
	std::atomic<uint32_t> go;    // set to 1 to start the timed loops (futex word)
	struct {
		uint64_t ops, misses;
		double secs, cpu_secs; // wall time of the timed loop, and the CPU time it got
		char err[64];	       // empty, or why the child gave up
	} child[MAX_PROCS];
};

std::vector<int> allowed_cpus;
shared_page *page;
std::string pin_root_dir; // ours, made for this run

// ---- small helpers ---------------------------------------------------------------------

double now(clockid_t clock = CLOCK_MONOTONIC)
{
	timespec ts;
	clock_gettime(clock, &ts);
	return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

// A shared (not process-private) futex: the parent and its children wait on each other.
void futex_wait(std::atomic<uint32_t> *word, uint32_t seen)
{
	syscall(SYS_futex, reinterpret_cast<uint32_t *>(word), FUTEX_WAIT, seen, nullptr, nullptr,
		0);
}

void futex_wake(std::atomic<uint32_t> *word)
{
	syscall(SYS_futex, reinterpret_cast<uint32_t *>(word), FUTEX_WAKE, INT_MAX, nullptr,
		nullptr, 0);
}

using bench_keys::mix32;

bool is_percpu(uint32_t type) { return type == BPF_MAP_TYPE_PERCPU_HASH; }
bool is_lru(uint32_t type) { return type == BPF_MAP_TYPE_LRU_HASH; }

double median(std::vector<double> v)
{
	std::sort(v.begin(), v.end());
	size_t n = v.size();
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// ---- the maps --------------------------------------------------------------------------

using bpf_fn = long (*)(int, union bpf_attr *, unsigned);

std::vector<uint32_t> make_keys(uint32_t type, uint32_t entries)
{
	std::vector<uint32_t> keys(entries);
	uint32_t salt = static_cast<uint32_t>(std::mt19937(entries ^ type)());
	for (uint32_t i = 0; i < entries; i++)
		keys[i] = type == BPF_MAP_TYPE_ARRAY ? i : mix32(i ^ salt);
	return keys;
}

// Create and fill a map through fn (bpfmap_bpf or the kernel's): its fd, or -errno.
int create_filled(bpf_fn fn, const bench_map &m)
{
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_type = m.type;
	a.key_size = 4;
	a.value_size = 8;
	a.max_entries = is_lru(m.type) ? 2 * m.entries : m.entries;
	strncpy(a.map_name, "scale_bench", sizeof(a.map_name) - 1);
	int fd = static_cast<int>(fn(BPF_MAP_CREATE, &a, CREATE_ATTR_SIZE));
	if (fd < 0)
		return -errno;
	std::vector<unsigned char> value(m.value_bytes, 0x5a);
	memset(&a, 0, sizeof(a));
	a.map_fd = static_cast<uint32_t>(fd);
	a.value = reinterpret_cast<uintptr_t>(value.data());
	for (const uint32_t &k : m.keys) {
		a.key = reinterpret_cast<uintptr_t>(&k);
		if (fn(BPF_MAP_UPDATE_ELEM, &a, ELEM_ATTR_SIZE) != 0) {
			int err = errno;
			close(fd);
			return -err;
		}
	}
	return fd;
}

int pin(int fd)
{
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.pathname = reinterpret_cast<uintptr_t>(PIN_PATH);
	a.bpf_fd = static_cast<uint32_t>(fd);
	return static_cast<int>(bpfmap_bpf(BPF_OBJ_PIN, &a, sizeof(a)));
}

void unpin() { unlink((pin_root_dir + "/" + PIN_FILE).c_str()); }

bpfmap_map *open_pinned()
{
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.pathname = reinterpret_cast<uintptr_t>(PIN_PATH);
	int fd = static_cast<int>(bpfmap_bpf(BPF_OBJ_GET, &a, sizeof(a)));
	return fd < 0 ? nullptr : bpfmap_map_get(fd);
}

// ---- the children's loop -------------------------------------------------------------

struct bpfmap_ops {
	bpfmap_map *map;
	uint64_t misses = 0;

	uint64_t lookup(const uint32_t *key)
	{
		auto *v = static_cast<const uint64_t *>(bpfmap_map_lookup_elem(map, key));
		if (!v) {
			misses++;
			return 0;
		}
		return *v;
	}
	bool update(const uint32_t *key, uint64_t value)
	{
		return bpfmap_map_update_elem(map, key, &value, BPF_ANY) == 0;
	}
};

struct kernel_ops {
	int fd;
	std::vector<uint64_t> buf; // one value as bpf(2) copies it (every CPU's, per-CPU)
	uint64_t misses = 0;

	long elem(int cmd, const uint32_t *key)
	{
		union bpf_attr a;
		memset(&a, 0, ELEM_ATTR_SIZE);
		a.map_fd = static_cast<uint32_t>(fd);
		a.key = reinterpret_cast<uintptr_t>(key);
		a.value = reinterpret_cast<uintptr_t>(buf.data());
		a.flags = BPF_ANY;
		return kernel_bpf(cmd, &a, ELEM_ATTR_SIZE);
	}
	uint64_t lookup(const uint32_t *key)
	{
		if (elem(BPF_MAP_LOOKUP_ELEM, key) != 0)
			misses++;
		return buf[0];
	}
	bool update(const uint32_t *key, uint64_t value)
	{
		buf[0] = value;
		return elem(BPF_MAP_UPDATE_ELEM, key) == 0;
	}
};

// Loop over keys for `seconds`, upd_pct of the ops updates spread evenly, the rest lookups.
// The ops done, or 0 when an update failed.
template <class Ops>
uint64_t timed_loop(Ops &ops, const std::vector<uint32_t> &keys, uint32_t upd_pct, double seconds,
		    double *elapsed)
{
	uint64_t n = 0, sum = 0;
	uint32_t credit = 0;
	size_t i = 0;
	double start = now(), t;
	do {
		for (unsigned b = 0; b < CLOCK_EVERY; b++, n++) {
			const uint32_t *key = &keys[i];
			i = i + 1 == keys.size() ? 0 : i + 1;
			credit += upd_pct;
			if (credit < 100) {
				sum += ops.lookup(key);
			} else {
				credit -= 100;
				if (!ops.update(key, n))
					return 0;
			}
		}
		t = now();
	} while (t - start < seconds);
	asm volatile("" : : "r"(sum)); // the values read are used
	*elapsed = t - start;
	return n;
}

void pin_to_cpu(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

// Tell the parent we are ready, then wait for its go.
void barrier()
{
	page->ready.fetch_add(1);
	futex_wake(&page->ready);
	while (page->go.load() == 0)
		futex_wait(&page->go, 0);
}

template <class Ops>
void child_run(Ops &ops, const std::vector<uint32_t> &keys, uint32_t upd_pct, double seconds,
	       unsigned idx)
{
	auto &slot = page->child[idx];
	barrier();
	double cpu = now(CLOCK_PROCESS_CPUTIME_ID);
	slot.ops = timed_loop(ops, keys, upd_pct, seconds, &slot.secs);
	slot.cpu_secs = now(CLOCK_PROCESS_CPUTIME_ID) - cpu;
	slot.misses = ops.misses;
	if (slot.ops == 0)
		snprintf(slot.err, sizeof(slot.err), "update failed");
}

// The inprog rows' child: BPF_PROG_TEST_RUN of the probe loop, which runs on this CPU,
// INPROG_REPEAT times per call, until the time is up.
[[noreturn]] void child_inprog(const bench_map &m, double seconds, unsigned idx)
{
	auto &slot = page->child[idx];
	barrier();
	double cpu = now(CLOCK_PROCESS_CPUTIME_ID), start = now(), t;
	uint64_t runs = 0;
	do {
		if (kernel_prog::run_ns(m.prog, INPROG_REPEAT) < 0) {
			snprintf(slot.err, sizeof(slot.err), "BPF_PROG_TEST_RUN: %s",
				 strerror(errno));
			_exit(1);
		}
		runs++;
		t = now();
	} while (t - start < seconds);
	slot.ops = runs * INPROG_REPEAT * INPROG_LOOP;
	slot.secs = t - start;
	slot.cpu_secs = now(CLOCK_PROCESS_CPUTIME_ID) - cpu;
	_exit(0);
}

[[noreturn]] void child(const bench_map &m, path p, uint32_t upd_pct, double seconds, unsigned idx)
{
	pin_to_cpu(allowed_cpus[idx % allowed_cpus.size()]);
	if (p == path::inprog)
		child_inprog(m, seconds, idx);
	std::vector<uint32_t> keys = m.keys;
	std::shuffle(keys.begin(), keys.end(), std::mt19937(idx + 1));
	if (p == path::kernel) {
		kernel_ops ops{m.fd, std::vector<uint64_t>(m.value_bytes / 8)};
		child_run(ops, keys, upd_pct, seconds, idx);
		_exit(0);
	}
	bpfmap_ops ops{open_pinned()};
	if (!ops.map) {
		snprintf(page->child[idx].err, sizeof(page->child[idx].err), "open pin: %s",
			 strerror(errno));
		page->ready.fetch_add(1); // let the parent go on to reap us
		futex_wake(&page->ready);
		_exit(1);
	}
	for (const uint32_t &k : keys) // fault the fresh mappings in before the clock starts
		ops.lookup(&k);
	ops.misses = 0;
	child_run(ops, keys, upd_pct, seconds, idx);
	_exit(0); // not exit(): the parent's atexit handler removes the pin root
}

// ---- the parent ------------------------------------------------------------------------

// What one run of procs children did.
struct run_result {
	double mops = -1; // their summed Mops/s; -1: a child failed (reason printed)
	double cpu = 0;	  // the share of the wall time they ran: below 1, others took CPU
};

run_result run_once(const bench_map &m, path p, unsigned procs, uint32_t upd_pct, double seconds)
{
	memset(static_cast<void *>(page), 0, sizeof(*page));
	std::vector<pid_t> pids;
	for (unsigned i = 0; i < procs; i++) {
		pid_t pid = fork();
		if (pid == 0)
			child(m, p, upd_pct, seconds, i);
		if (pid < 0) {
			perror("fork");
			exit(1);
		}
		pids.push_back(pid);
	}
	for (uint32_t r; (r = page->ready.load()) < procs;)
		futex_wait(&page->ready, r);
	page->go.store(1);
	futex_wake(&page->go);

	bool ok = true;
	for (pid_t pid : pids) {
		int status;
		waitpid(pid, &status, 0);
		ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
	}
	run_result res;
	double mops = 0, cpu = 0, wall = 0;
	for (unsigned i = 0; i < procs; i++) {
		const auto &c = page->child[i];
		if (c.err[0] || !ok) {
			fprintf(stderr, "%s/%u: child %u failed: %s\n", name_of(m.type), m.entries,
				i, c.err[0] ? c.err : "abnormal exit");
			return res;
		}
		if (c.misses)
			fprintf(stderr, "%s/%u: child %u: %llu lookups missed a present key\n",
				name_of(m.type), m.entries, i, (unsigned long long)c.misses);
		mops += double(c.ops) / c.secs / 1e6;
		cpu += c.cpu_secs;
		wall += c.secs;
	}
	res.mops = mops;
	res.cpu = cpu / wall;
	return res;
}

struct row_printer {
	FILE *csv = nullptr;

	void header()
	{
		printf("%-12s %8s %4s %-6s %5s %9s %10s %5s\n", "TYPE", "entries", "upd%", "path",
		       "procs", "Mops/s", "ratio_vs_1", "cpu%");
		if (csv)
			fprintf(csv,
				"type,entries,update_pct,path,procs,mops,ratio_vs_1,cpu_pct\n");
	}
	void row(const bench_map &m, uint32_t upd, path p, unsigned procs, double mops, double one,
		 double cpu)
	{
		const char *ps = path_name(p);
		printf("%-12s %8u %4u %-6s %5u %9.2f %10.2f %5.0f\n", name_of(m.type), m.entries,
		       upd, ps, procs, mops, mops / one, 100 * cpu);
		fflush(stdout);
		if (csv)
			fprintf(csv, "%s,%u,%u,%s,%u,%.4f,%.4f,%.1f\n", name_of(m.type), m.entries,
				upd, ps, procs, mops, mops / one, 100 * cpu);
	}
};

// The rows of one (map, update %, path): each process count, median of the repeats.
void measure(const bench_map &m, uint32_t upd, path p, const options &o, row_printer &out)
{
	std::vector<std::vector<double>> mops(o.max_procs + 1), cpu(o.max_procs + 1);
	for (unsigned r = 0; r < o.repeats; r++)
		for (unsigned procs = 1; procs <= o.max_procs; procs++) {
			run_result res = run_once(m, p, procs, upd, o.seconds);
			if (res.mops < 0)
				return;
			mops[procs].push_back(res.mops);
			cpu[procs].push_back(res.cpu);
		}
	double one = median(mops[1]);
	for (unsigned procs = 1; procs <= o.max_procs; procs++)
		out.row(m, upd, p, procs, median(mops[procs]), one, median(cpu[procs]));
}

// The inprog rows: the kernel map m.fd driven from inside a BPF program instead of bpf(2),
// kernel_prog::load_probe_loop's loop over random probes (every present key about as often)
// with upd% of its iterations updates. Skipped, with the reason, where the program does not
// load.
void measure_inprog(bench_map &m, const options &o, row_printer &out)
{
	uint32_t n = 1;
	while (n < m.entries)
		n <<= 1;
	// Probe i: 8 bytes, key i % entries, which also serves as the value an update stores
	// (a per-CPU map's program-side value is one CPU's 8 bytes).
	uint64_t probe;
	int pfd = kernel_prog::make_probes(n, sizeof(probe), [&](uint32_t i) {
		probe = m.keys[i % m.entries];
		return &probe;
	});
	if (pfd < 0) {
		printf("# %s/%u inprog rows skipped: probes: %s\n", name_of(m.type), m.entries,
		       strerror(errno));
		return;
	}
	for (uint32_t upd : o.updates) {
		std::string why;
		m.prog = kernel_prog::load_probe_loop(pfd, n - 1, m.fd, kernel_prog::probe_op::mix,
						      INPROG_LOOP, &why, upd);
		if (m.prog < 0) {
			printf("# %s/%u inprog rows skipped: %s\n", name_of(m.type), m.entries,
			       why.c_str());
			break;
		}
		measure(m, upd, path::inprog, o, out);
		close(m.prog);
		m.prog = -1;
	}
	close(pfd);
}

// bpf(2) where it can be used; else the reason, printed once.
bool kernel_usable()
{
	static int usable = -1;
	if (usable < 0) {
		bench_map probe{BPF_MAP_TYPE_ARRAY, 1, {0}, 8};
		int fd = create_filled(kernel_bpf, probe);
		usable = fd >= 0;
		if (fd >= 0)
			close(fd);
		else
			printf("# kernel rows skipped: bpf(2): %s\n", strerror(-fd));
	}
	return usable;
}

void run_config(uint32_t type, uint32_t entries, const options &o, row_printer &out)
{
	uint32_t vbytes = is_percpu(type) ? 8 * bpfmap_num_possible_cpus() : 8;
	bench_map m{type, entries, make_keys(type, entries), vbytes};

	m.fd = create_filled(bpfmap_bpf, m);
	if (m.fd < 0 || pin(m.fd) != 0) {
		fprintf(stderr, "%s/%u: bpfmap map: %s\n", name_of(type), entries,
			strerror(m.fd < 0 ? -m.fd : errno));
		exit(1);
	}
	for (uint32_t upd : o.updates)
		measure(m, upd, path::bpfmap, o, out);
	unpin();
	close(m.fd);

	if (!o.kernel || !kernel_usable())
		return;
	m.fd = create_filled(kernel_bpf, m);
	if (m.fd < 0) {
		printf("# %s/%u kernel rows skipped: bpf(2): %s\n", name_of(type), entries,
		       strerror(-m.fd));
		return;
	}
	for (uint32_t upd : o.updates)
		measure(m, upd, path::kernel, o, out);
	measure_inprog(m, o, out);
	close(m.fd);
}

// ---- setup -----------------------------------------------------------------------------

void remove_pin_root()
{
	std::error_code ec;
	std::filesystem::remove_all(pin_root_dir, ec);
}

// A pin root of our own, so the bench never sees or leaves a user's pins.
void use_private_pin_root()
{
	char tmpl[] = "/dev/shm/bpfmap-scale-XXXXXX";
	if (!mkdtemp(tmpl)) {
		perror("mkdtemp");
		exit(1);
	}
	pin_root_dir = tmpl;
	atexit(remove_pin_root);
	setenv("BPFMAP_PIN_ROOT", tmpl, 1);
}

std::vector<uint32_t> parse_list(const std::string &s, bool types)
{
	std::vector<uint32_t> out;
	for (size_t at = 0; at <= s.size();) {
		size_t end = std::min(s.find(',', at), s.size());
		std::string item = s.substr(at, end - at);
		at = end + 1;
		if (!types) {
			out.push_back(static_cast<uint32_t>(strtoul(item.c_str(), nullptr, 10)));
			continue;
		}
		auto t = std::find_if(std::begin(TYPES), std::end(TYPES),
				      [&](const type_name &tn) { return item == tn.name; });
		if (t == std::end(TYPES)) {
			fprintf(stderr, "unknown map type %s\n", item.c_str());
			exit(2);
		}
		out.push_back(t->type);
	}
	return out;
}

options parse_options(int argc, char **argv)
{
	options o;
	for (const type_name &t : TYPES)
		o.types.push_back(t.type);
	for (int i = 1; i < argc; i++) {
		std::string arg = argv[i], name = arg.substr(0, arg.find('=')), val;
		if (arg.find('=') != std::string::npos)
			val = arg.substr(arg.find('=') + 1);
		else if (name != "--no-kernel" && i + 1 < argc)
			val = argv[++i];
		if (name == "--types")
			o.types = parse_list(val, true);
		else if (name == "--entries")
			o.entries = parse_list(val, false);
		else if (name == "--updates")
			o.updates = parse_list(val, false);
		else if (name == "--max-procs")
			o.max_procs = static_cast<unsigned>(atoi(val.c_str()));
		else if (name == "--seconds")
			o.seconds = atof(val.c_str());
		else if (name == "--repeats")
			o.repeats = std::max(1, atoi(val.c_str()));
		else if (name == "--no-kernel")
			o.kernel = false;
		else if (name == "--csv")
			o.csv = val;
		else {
			fprintf(stderr, "usage: see the head of bench/scale_bench.cc (%s?)\n",
				arg.c_str());
			exit(2);
		}
	}
	if (o.max_procs == 0)
		o.max_procs = std::max<unsigned>(2, static_cast<unsigned>(allowed_cpus.size()));
	o.max_procs = std::min(o.max_procs, MAX_PROCS);
	return o;
}

void find_allowed_cpus()
{
	cpu_set_t set;
	sched_getaffinity(0, sizeof(set), &set);
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
		if (CPU_ISSET(cpu, &set))
			allowed_cpus.push_back(cpu);
}

} // namespace

// The one-way cost of moving a written cache line from one CPU to another: two processes
// (pinned to the first two allowed CPUs) take turns writing a word in a shared page. Every
// update that another process's next access has to fetch pays this; it is what bounds the
// scaling of small maps with many writes (README, Benchmarks).
double line_transfer_ns()
{
	if (allowed_cpus.size() < 2)
		return -1;
	constexpr uint32_t TURNS = 200000;
	std::atomic<uint32_t> &turn = page->ready; // reused: no run is in progress
	turn.store(0);
	pid_t pid = fork();
	if (pid == 0) {
		pin_to_cpu(allowed_cpus[1]);
		for (uint32_t i = 0; i < TURNS; i++) {
			while (turn.load(std::memory_order_acquire) != 2 * i + 1)
				;
			turn.store(2 * i + 2, std::memory_order_release);
		}
		_exit(0);
	}
	pin_to_cpu(allowed_cpus[0]);
	double start = now();
	for (uint32_t i = 0; i < TURNS; i++) {
		turn.store(2 * i + 1, std::memory_order_release);
		while (turn.load(std::memory_order_acquire) != 2 * i + 2)
			;
	}
	double ns = (now() - start) * 1e9 / (2.0 * TURNS);
	waitpid(pid, nullptr, 0);
	cpu_set_t all;
	CPU_ZERO(&all);
	for (int cpu : allowed_cpus)
		CPU_SET(cpu, &all);
	sched_setaffinity(0, sizeof(all), &all);
	return ns;
}

int main(int argc, char **argv)
{
	find_allowed_cpus();
	options o = parse_options(argc, argv);
	use_private_pin_root(); // before the first bpfmap call, which reads it
	void *shared = mmap(nullptr, sizeof(shared_page), PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	page = static_cast<shared_page *>(shared);

	row_printer out;
	if (!o.csv.empty() && !(out.csv = fopen(o.csv.c_str(), "w"))) {
		perror(o.csv.c_str());
		return 1;
	}
	printf("# %u CPUs allowed, %.2f s per run, median of %u; children pinned to CPU i %% %zu\n",
	       static_cast<unsigned>(allowed_cpus.size()), o.seconds, o.repeats,
	       allowed_cpus.size());
	printf("# one-way cache line transfer between CPUs %d and %d: %.1f ns\n", allowed_cpus[0],
	       allowed_cpus.size() > 1 ? allowed_cpus[1] : allowed_cpus[0], line_transfer_ns());
	out.header();
	for (uint32_t type : o.types)
		for (uint32_t entries : o.entries)
			run_config(type, entries, o, out);
	if (out.csv)
		fclose(out.csv);
	return 0;
}
