// Scribbling on live maps (issue 18, part 7a): a map's region is a file that anyone holding
// a writable fd can change, so every process must survive any bytes appearing in it at any
// moment. For each served map type, a round creates a fresh map and forks two processes:
//  - the worker inherits the map fd and runs every command the type takes, in a random
//    mix, in a loop: lookup, update (ANY/NOEXIST/EXIST), delete, get_next_key walks,
//    lookup_and_delete, the four batch commands, push/pop/peek, the program-side calls of
//    bpfmap.h (lookup/update/delete, lookup_percpu, push/pop/peek), ring reserve/submit/
//    discard/output/query, a RingConsumer's consume/poll, a UserRingProducer with drain,
//    epoll readiness, mmap of the map fd, OBJ_GET of the map's pin, MAP_GET_FD_BY_ID and
//    OBJ_GET_INFO_BY_FD;
//  - the attacher was forked before the map existed, so it holds no handle of it: it opens
//    the map again and again (OBJ_GET of the pin, MAP_GET_FD_BY_ID), runs a few commands on
//    what it got and closes it, which lets go of its mapping; each open thus attaches to a
//    region whose header and control block were scribbled on (an errno or a working map is
//    fine, a crash is not).
// Meanwhile this process writes random words (zeros, all-ones, small numbers 0..64, random
// 32/64-bit values, the word that is there with a bit flipped or a small number added) at
// random offsets of the map's file, the type's data area and the header page (the file's
// last page) alike, every 2 ms, through pwrite() on the map fd (which is the region file)
// or through a MAP_SHARED mapping of it (each round picks one). Both processes publish
// their progress in a shared anonymous page (calls done, the current call and when it
// started); a round fails when one dies of a signal or exits unasked (crash: the signal,
// the op in progress and a backtrace from the child's own handler), when one call runs for
// more than 1 s (hang: the child prints its backtrace on SIGUSR2, then gets SIGKILL), or
// when a program-side pointer (lookup, ring reserve, consumer record) lies outside the
// map's mappings (oob). Wrong answers are allowed: nothing checks what the calls return.
//
// HeaderAttach (per type) is the deterministic half of the attach path: every 32-bit word of
// the first 1 KiB of the header page (the generic header and the control block) is set in
// turn to 0, ~0, the original with one bit flipped, 1, 64 and a random value (the first
// three only under the sanitizers); after each, a process that never held the map opens it
// (OBJ_GET, MAP_GET_FD_BY_ID) and runs each command once. Then the whole file is restored,
// so that each failure ("header page offset N set to V") names the one word behind it;
// after a failure a new attacher goes on (up to 16 failures per type).
//
// Usage (from the build directory):
//   tests/scribble_test                                   every type, default rounds
//   tests/scribble_test --gtest_filter='*LPM*'            one type (both tests)
//   tests/scribble_test --gtest_filter='*Rounds/HASH'     plain HASH only (not NO_PREALLOC)
//   BPFMAP_SCRIBBLE_ROUNDS=60 tests/scribble_test ...     rounds per type (default 3, 1
//                                                         under the sanitizers)
//   BPFMAP_SCRIBBLE_SEED=1234 BPFMAP_SCRIBBLE_ROUNDS=1    replay a failed round: a failure
//                                                         prints the round's own seed, and
//                                                         round 0 runs with the seed given
//                                                         (timing differs, so a replay hits
//                                                         the same spot only sometimes)
//   BPFMAP_SCRIBBLE_MS=1000                               scribbling time per round (600)
//   BPFMAP_SCRIBBLE_HANG_MS=1000                          how long one call may take (1000,
//                                                         3000 under the sanitizers)
//   BPFMAP_SCRIBBLE_STATS=1                               print calls and failed calls per
//                                                         op after each round (coverage)
//   BPFMAP_SCRIBBLE_DRY=1                                 no scribbling (a baseline: every
//                                                         round must pass then)
//   BPFMAP_SCRIBBLE_FAILURES=path                         also append each failure line there
//   BPFMAP_SCRIBBLE_GDB=1                                 on a hang, also attach gdb to the
//                                                         child for all threads' backtraces
// Every failure prints one line "SCRIBBLE-FAIL type=... kind=crash|hang|exit|oob child=...
// op=<the call in progress> (or after=<the last call>, when the child died between calls)"
// and each test one "SCRIBBLE-SUMMARY type=... crash=... hang=..." line on stderr, which
// scripts/scribble.sh ROUNDS counts per type (the held-out scale: scripts/scribble.sh 60).
// Rounds go on after a failure, so the counts say how often a type fails. Backtraces name
// libbpfmap.so(+offset): `addr2line -f -i -C -e build/libbpfmap.so 0xoffset` gives the
// function and line (in a RelWithDebInfo or Debug build). Under ASan the sanitizer's own
// report shows the faulting line, and the failure reads "sanitizer report (above)".
#include <gtest/gtest.h>

#include <execinfo.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bpfmap/ringbuf.hpp"
#include "test_util.h"

using namespace bpfmap::test;

namespace {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr bool SANITIZED = true;
#else
constexpr bool SANITIZED = false;
#endif

constexpr size_t PAGE = 4096;
constexpr uint64_t SECOND_NS = 1000000000ull;
constexpr int EXIT_OOB = 3;		    // a child's exit code: a pointer outside the map

struct map_case {
	const char *name;
	uint32_t type, key_size, value_size, max_entries, flags;
	uint64_t extra;
};

const map_case CASES[] = {
	{"HASH", u::MAP_TYPE_HASH, 8, 16, 64, 0, 0},
	{"HASH_NO_PREALLOC", u::MAP_TYPE_HASH, 8, 16, 64, u::BPF_F_NO_PREALLOC, 0},
	{"PERCPU_HASH", u::MAP_TYPE_PERCPU_HASH, 8, 16, 64, 0, 0},
	{"LRU_HASH", u::MAP_TYPE_LRU_HASH, 8, 16, 64, 0, 0},
	{"LRU_HASH_NO_COMMON_LRU", u::MAP_TYPE_LRU_HASH, 8, 16, 64, u::BPF_F_NO_COMMON_LRU, 0},
	{"LRU_PERCPU_HASH", u::MAP_TYPE_LRU_PERCPU_HASH, 8, 16, 64, 0, 0},
	{"ARRAY", u::MAP_TYPE_ARRAY, 4, 16, 64, 0, 0},
	{"ARRAY_MMAPABLE", u::MAP_TYPE_ARRAY, 4, 16, 512, u::BPF_F_MMAPABLE, 0},
	{"PERCPU_ARRAY", u::MAP_TYPE_PERCPU_ARRAY, 4, 16, 64, 0, 0},
	{"LPM_TRIE", u::MAP_TYPE_LPM_TRIE, 8, 8, 64, u::BPF_F_NO_PREALLOC, 0},
	{"QUEUE", u::MAP_TYPE_QUEUE, 0, 8, 64, 0, 0},
	{"STACK", u::MAP_TYPE_STACK, 0, 8, 64, 0, 0},
	{"BLOOM_FILTER", u::MAP_TYPE_BLOOM_FILTER, 0, 8, 64, 0, 3},
	{"RINGBUF", u::MAP_TYPE_RINGBUF, 0, 0, 4 * PAGE, 0, 0},
	{"USER_RINGBUF", u::MAP_TYPE_USER_RINGBUF, 0, 0, 4 * PAGE, 0, 0},
};

// gtest prints a parameter by its name.
void PrintTo(const map_case &c, std::ostream *os) { *os << c.name; }

enum family { KEYED, KEYLESS, RING, USER_RING };

family family_of(const map_case &c)
{
	switch (c.type) {
	case u::MAP_TYPE_QUEUE:
	case u::MAP_TYPE_STACK:
	case u::MAP_TYPE_BLOOM_FILTER:
		return KEYLESS;
	case u::MAP_TYPE_RINGBUF:
		return RING;
	case u::MAP_TYPE_USER_RINGBUF:
		return USER_RING;
	default:
		return KEYED;
	}
}

bool percpu(const map_case &c)
{
	return c.type == u::MAP_TYPE_PERCPU_HASH || c.type == u::MAP_TYPE_LRU_PERCPU_HASH ||
	       c.type == u::MAP_TYPE_PERCPU_ARRAY;
}

// What a child is doing; the names go into failure reports.
#define OPS(X)                                                                                     \
	X(IDLE) X(LOOKUP) X(UPDATE_ANY) X(UPDATE_NOEXIST) X(UPDATE_EXIST) X(DELETE)              \
	X(GET_NEXT_KEY) X(LOOKUP_AND_DELETE) X(LOOKUP_BATCH) X(LOOKUP_AND_DELETE_BATCH)           \
	X(UPDATE_BATCH) X(DELETE_BATCH) X(PROG_LOOKUP) X(PROG_LOOKUP_PERCPU) X(PROG_UPDATE)       \
	X(PROG_DELETE) X(PUSH) X(PUSH_EXIST) X(PEEK) X(POP) X(PROG_PUSH) X(PROG_POP)              \
	X(PROG_PEEK) X(RB_RESERVE) X(RB_SUBMIT) X(RB_DISCARD) X(RB_OUTPUT) X(RB_QUERY)            \
	X(RB_CONSUMER_OPEN) X(RB_CONSUME) X(RB_POLL) X(EPOLL_ADD) X(EPOLL_WAIT) X(URB_OPEN)       \
	X(URB_RESERVE) X(URB_SUBMIT) X(URB_DISCARD) X(URB_DRAIN) X(MMAP) X(MMAP_ACCESS)           \
	X(MAP_GET) X(OBJ_GET) X(GET_FD_BY_ID) X(INFO) X(CLOSE) X(FREE_HANDLES)
#define OP_ENUM(n) OP_##n,
#define OP_NAME(n) #n,
enum op : uint32_t { OPS(OP_ENUM) OP_COUNT };
const char *const OP_NAMES[] = {OPS(OP_NAME)};

// A child's progress, in a page both processes map.
struct progress {
	std::atomic<uint64_t> calls;
	std::atomic<uint64_t> start_ns; // when the current call started; 0 between calls
	std::atomic<uint32_t> op;
	std::atomic<uint32_t> ready;
	// Per op: calls, and those that failed (an errno, NULL) where the call says.
	std::atomic<uint32_t> op_calls[OP_COUNT], op_errors[OP_COUNT];
};

struct shared_page {
	progress worker, attacher;
	std::atomic<uint32_t> go, stop;
	// HeaderAttach's handshake: the parent bumps seq after scribbling a word, the attacher
	// sets done to seq when it has tried the map.
	std::atomic<uint32_t> seq, done;
	uint32_t map_id;
	char pin[256];
};
static_assert(sizeof(shared_page) <= PAGE);

uint64_t now_ns()
{
	timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

uint64_t splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);
	return s && *s ? strtoull(s, nullptr, 0) : dflt;
}

// How long one call may take: the second, three under the sanitizers, which slow
// every call several times over.
uint64_t hang_ns()
{
	static const uint64_t ns = env_u64("BPFMAP_SCRIBBLE_HANG_MS", SANITIZED ? 3000 : 1000) * 1000000;
	return ns;
}

// ---- the child side ----

progress *g_progress; // this child's slot, for the signal handlers

void write_str(const char *s) { (void)!write(2, s, strlen(s)); }

void print_backtrace(const char *why)
{
	char buf[160];
	op o = static_cast<op>(g_progress ? g_progress->op.load() : 0);
	snprintf(buf, sizeof(buf), "scribble child %d: %s during %s, backtrace:\n", getpid(), why,
		 o < OP_COUNT ? OP_NAMES[o] : "?");
	write_str(buf);
	void *frames[48];
	int n = backtrace(frames, 48);
	backtrace_symbols_fd(frames, n, 2);
}

void on_crash(int sig)
{
	print_backtrace(strsignal(sig));
	signal(sig, SIG_DFL);
	raise(sig);
}

void on_hang_report(int) { print_backtrace("stalled (SIGUSR2 from the watchdog)"); }

void child_setup(progress *p)
{
	g_progress = p;
	void *warm[2];
	backtrace(warm, 2); // loads libgcc now, not inside a signal handler
	signal(SIGUSR2, on_hang_report);
	if (!SANITIZED) // the sanitizers report faults themselves
		for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT})
			signal(sig, on_crash);
}

// The address ranges of the mappings of the map's file in this process: every pointer a
// program-side call hands out must lie inside one.
struct region_ranges {
	ino_t ino = 0;
	dev_t dev = 0;
	std::vector<std::pair<uintptr_t, uintptr_t>> r;

	void load()
	{
		r.clear();
		FILE *f = fopen("/proc/self/maps", "re");
		if (!f)
			return;
		char line[512];
		while (fgets(line, sizeof(line), f)) {
			unsigned long lo, hi, off, inode;
			unsigned maj, min;
			char perms[8];
			if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &lo, &hi, perms, &off, &maj, &min,
				   &inode) == 7 &&
			    inode == ino && makedev(maj, min) == dev)
				r.emplace_back(lo, hi);
		}
		fclose(f);
		// A ring's data is mapped twice, back to back, in pieces: a record that wraps
		// spans two mappings.
		std::sort(r.begin(), r.end());
		size_t n = 0;
		for (size_t i = 0; i < r.size(); i++) {
			if (n && r[n - 1].second == r[i].first)
				r[n - 1].second = r[i].second;
			else
				r[n++] = r[i];
		}
		r.resize(n);
	}
	bool has(const void *p, size_t len) const
	{
		auto a = reinterpret_cast<uintptr_t>(p);
		for (auto [lo, hi] : r)
			if (a >= lo && a <= hi && len <= hi - a)
				return true;
		return false;
	}
	// Checked again after a fresh look, as a call may have mapped the file anew.
	void check(const void *p, size_t len, const char *what)
	{
		if (has(p, len))
			return;
		load();
		if (has(p, len))
			return;
		char buf[200];
		snprintf(buf, sizeof(buf), "scribble child %d: %s gave %p (+%zu), outside the map's mappings\n",
			 getpid(), what, p, len);
		write_str(buf);
		_exit(EXIT_OOB);
	}
};

volatile uint64_t g_sink; // reads through returned pointers land here

uint64_t read_all(const void *p, size_t len)
{
	uint64_t s = 0;
	auto *b = static_cast<const volatile unsigned char *>(p);
	for (size_t i = 0; i < len; i++)
		s += b[i];
	g_sink = g_sink + s;
	return s;
}

// Runs commands on one fd of the map, each between begin() and end() so that the watchdog
// sees which call is in progress and since when.
class worker {
public:
	worker(const map_case &c, int fd, progress &p, const shared_page &sh, uint64_t seed)
		: c_(c), m_(c), fd_(fd), p_(p), sh_(sh), rng_(seed), fam_(family_of(c))
	{
		// Buffers are sized as the map's info says, as a client that opened a map sizes
		// them: an attach may have taken sizes that scribbling changed (they validated).
		u::bpf_map_info info{};
		if (info_of(fd, &info) == 0) {
			m_.type = info.type;
			m_.key_size = info.key_size;
			m_.value_size = info.value_size;
			m_.max_entries = info.max_entries;
			m_.flags = info.map_flags;
		}
		ncpu_ = bpfmap_num_possible_cpus();
		vsz_ = percpu(m_) ? round_up8(m_.value_size) * ncpu_ : m_.value_size;
		if (vsz_ > (1u << 24) || m_.key_size > (1u << 16))
			vsz_ = 0, broken_ = true; // not a map this test could have made
		kbuf_.assign(m_.key_size / 8 + 2, 0);
		kbuf2_.assign(m_.key_size / 8 + 2, 0);
		vbuf_.assign(vsz_ / 8 + 8, 0);
		struct stat st;
		if (fstat(fd, &st) == 0) {
			ranges_.ino = st.st_ino;
			ranges_.dev = st.st_dev;
		}
		begin(OP_MAP_GET);
		h_ = bpfmap_map_get(fd);
		end(h_ ? 0 : -1);
		ranges_.load();
	}
	~worker() { release(); }

	// Everything this worker opened on the map goes (before the fd is closed).
	void release()
	{
		begin(OP_FREE_HANDLES);
		if (epfd_ >= 0)
			close(epfd_);
		epfd_ = -1;
		if (rb_rec_)
			bpfmap_ringbuf_discard(rb_rec_, 0);
		rb_rec_ = nullptr;
		if (urb_rec_)
			urb_.discard(urb_rec_);
		urb_rec_ = nullptr;
		consumer_.reset();
		urb_.~UserRingProducer();
		new (&urb_) bpfmap::UserRingProducer();
		urb_open_ = false;
		if (mm_)
			munmap(mm_, mm_len_);
		mm_ = nullptr;
		if (h_)
			bpfmap_map_put(h_);
		h_ = nullptr;
		end();
	}

	void step()
	{
		if (broken_)
			return;
		switch (fam_) {
		case KEYED:
			keyed_step();
			break;
		case KEYLESS:
			keyless_step();
			break;
		case RING:
			ring_step();
			break;
		case USER_RING:
			user_ring_step();
			break;
		}
	}

	// Every command of the type once (HeaderAttach).
	void each_once()
	{
		if (broken_)
			return;
		for (unsigned i = 0; i < 40; i++)
			step_pick(i);
	}

	// The same process opens the map again (its handle is shared, as the kernel shares
	// the struct bpf_map) and tries it.
	void reopen_step()
	{
		int fd = reopen(rng_() & 1);
		if (fd < 0)
			return;
		void *k = make_key();
		call(OP_LOOKUP, [&] { return lookup(fd, fam_ == KEYED ? k : nullptr, vbuf_.data()); });
		info_of(fd);
		begin(OP_CLOSE);
		close(fd);
		end();
	}

	int reopen(bool by_pin)
	{
		u::bpf_attr a{};
		if (by_pin) {
			a.obj.pathname = ptr(sh_.pin);
			return static_cast<int>(call(OP_OBJ_GET, [&] { return sys(u::OBJ_GET, a); }));
		}
		a.id.map_id = sh_.map_id;
		return static_cast<int>(call(OP_GET_FD_BY_ID, [&] { return sys(u::MAP_GET_FD_BY_ID, a); }));
	}

	uint64_t calls() const { return p_.calls.load(); }

private:
	static uint32_t round_up8(uint32_t v) { return (v + 7) & ~7u; }

	void begin(op o)
	{
		p_.op.store(o, std::memory_order_relaxed);
		p_.start_ns.store(now_ns(), std::memory_order_release);
	}
	// r: the call's result where it has one, negative for an error.
	void end(long r = 0)
	{
		p_.start_ns.store(0, std::memory_order_release);
		p_.calls.fetch_add(1, std::memory_order_relaxed);
		op o = static_cast<op>(p_.op.load(std::memory_order_relaxed));
		p_.op_calls[o].fetch_add(1, std::memory_order_relaxed);
		if (r < 0)
			p_.op_errors[o].fetch_add(1, std::memory_order_relaxed);
	}
	template <class F> long call(op o, F f)
	{
		begin(o);
		long r = f();
		end(r);
		return r;
	}

	// Keys that keep the map populated: 1.5 times max_entries of them, mostly present.
	// A key in kbuf_ (the rest of a longer key stays zero).
	void *make_key() { return make_key(kbuf_.data()); }
	void *make_key(void *k)
	{
		uint32_t n = static_cast<uint32_t>(rng_() % (c_.max_entries + c_.max_entries / 2 + 1));
		if (m_.key_size < c_.key_size)
			return k; // zeros
		if (c_.type == u::MAP_TYPE_LPM_TRIE) {
			static const uint32_t lens[] = {0, 8, 16, 24, 32, 32, 32, 20};
			uint32_t lk[2] = {lens[rng_() % 8], __builtin_bswap32(0x0a000000u | (n << 8) | (n & 3))};
			if (rng_() % 8 == 0)
				lk[0] = static_cast<uint32_t>(rng_() % 40); // some past the limit
			memcpy(k, lk, 8);
			return k;
		}
		if (c_.key_size == 4) {
			memcpy(k, &n, 4);
			return k;
		}
		uint64_t n64 = n;
		memcpy(k, &n64, 8);
		return k;
	}
	void make_value(void *v, size_t len)
	{
		auto *b = static_cast<unsigned char *>(v);
		uint64_t x = rng_();
		for (size_t i = 0; i < len; i++)
			b[i] = static_cast<unsigned char>(x >> (8 * (i & 7))) + static_cast<unsigned char>(i);
	}

	long elem_call(op o, int cmd, const void *key, void *value, uint64_t flags)
	{
		begin(o);
		long r = elem(cmd, fd_, key, value, flags);
		end(r);
		return r;
	}

	// A walk from the first key or from a random one (present or not), of random length:
	// a corrupt map may hand out keys in a cycle, and the walk is ours to bound.
	void walk_keys()
	{
		bool first = rng_() & 1;
		if (!first)
			make_key();
		uint32_t steps = 1 + rng_() % (2 * c_.max_entries + 8);
		for (uint32_t i = 0; i < steps; i++) {
			if (elem_call(OP_GET_NEXT_KEY, u::MAP_GET_NEXT_KEY, first ? nullptr : kbuf_.data(),
				      kbuf2_.data(), 0))
				return;
			std::swap(kbuf_, kbuf2_);
			first = false;
		}
	}

	long batch(op o, int cmd, void *in, void *out, void *keys, void *values, uint32_t count,
		   uint64_t elem_flags)
	{
		u::bpf_attr a{};
		a.batch.map_fd = fd_;
		a.batch.in_batch = ptr(in);
		a.batch.out_batch = ptr(out);
		a.batch.keys = ptr(keys);
		a.batch.values = ptr(values);
		a.batch.count = count;
		a.batch.elem_flags = elem_flags;
		begin(o);
		long r = sys(cmd, a);
		end(r);
		batch_count_ = a.batch.count;
		return r;
	}

	// Batches from the start, each going on from the last one's token, up to max_calls of
	// them (fewer when random says so).
	void walk_batch(op o, int cmd, uint32_t max_calls, uint32_t max_count = 8)
	{
		constexpr uint32_t N = 8;
		// The batch token is a key or a 32-bit position, as the type has it.
		std::vector<uint64_t> in(m_.key_size / 8 + 2), out(in.size());
		std::vector<char> keys(N * m_.key_size + 8), values(N * vsz_ + 8);
		bool first = true;
		uint32_t calls = 1 + rng_() % max_calls;
		for (uint32_t i = 0; i < calls; i++) {
			long r = batch(o, cmd, first ? nullptr : in.data(), out.data(), keys.data(),
				       values.data(), 1 + rng_() % std::min(N, max_count), 0);
			if (r)
				return;
			in = out;
			first = false;
		}
	}

	void write_batch(op o, int cmd)
	{
		constexpr uint32_t N = 8;
		std::vector<char> keys(N * m_.key_size + 8), values(N * vsz_ + 8);
		uint32_t n = 1 + rng_() % N;
		for (uint32_t i = 0; i < n; i++) {
			make_key(&keys[i * m_.key_size]);
			make_value(&values[i * vsz_], vsz_);
		}
		batch(o, cmd, nullptr, nullptr, keys.data(), values.data(), n, 0);
	}

	void prog_lookup(bool one_cpu)
	{
		if (!h_)
			return;
		void *k = make_key();
		void *p;
		begin(one_cpu ? OP_PROG_LOOKUP_PERCPU : OP_PROG_LOOKUP);
		if (one_cpu)
			p = bpfmap_map_lookup_percpu_elem(h_, k, static_cast<uint32_t>(rng_() % (ncpu_ + 1)));
		else
			p = bpfmap_map_lookup_elem(h_, k);
		if (p) {
			ranges_.check(p, m_.value_size, OP_NAMES[p_.op.load()]);
			read_all(p, m_.value_size);
			if (rng_() % 4 == 0) // a program stores through the pointer it got
				memset(p, static_cast<int>(rng_()), m_.value_size);
		}
		end(p ? 0 : -1);
	}

	void step_pick(unsigned pick)
	{
		switch (fam_) {
		case KEYED:
			keyed_op(pick % 19);
			break;
		case KEYLESS:
			keyless_op(pick % 12);
			break;
		case RING:
			ring_op(pick % 11);
			break;
		case USER_RING:
			user_ring_op(pick % 8);
			break;
		}
	}

	void keyed_step()
	{
		// Updates outnumber deletes, so the map stays full or nearly.
		static const uint8_t mix[] = {0, 0, 1, 1, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9, 10, 11,
					      12, 13, 13, 14, 15, 16, 17, 18};
		keyed_op(mix[rng_() % sizeof(mix)]);
	}

	void keyed_op(unsigned o)
	{
		void *k = make_key();
		char *v = reinterpret_cast<char *>(vbuf_.data());
		switch (o) {
		case 0:
			elem_call(OP_LOOKUP, u::MAP_LOOKUP_ELEM, k, v, 0);
			break;
		case 1:
			make_value(v, vsz_);
			elem_call(OP_UPDATE_ANY, u::MAP_UPDATE_ELEM, k, v, u::BPF_ANY);
			break;
		case 2:
			make_value(v, vsz_);
			elem_call(OP_UPDATE_NOEXIST, u::MAP_UPDATE_ELEM, k, v, u::BPF_NOEXIST);
			break;
		case 3:
			make_value(v, vsz_);
			elem_call(OP_UPDATE_EXIST, u::MAP_UPDATE_ELEM, k, v, u::BPF_EXIST);
			break;
		case 4:
			elem_call(OP_DELETE, u::MAP_DELETE_ELEM, k, nullptr, 0);
			break;
		case 5:
			walk_keys();
			break;
		case 6:
			elem_call(OP_LOOKUP_AND_DELETE, u::MAP_LOOKUP_AND_DELETE_ELEM, k, v, 0);
			break;
		case 7:
			walk_batch(OP_LOOKUP_BATCH, u::MAP_LOOKUP_BATCH, 2 * c_.max_entries / 8 + 4);
			break;
		case 8: // a short walk: the map is to stay populated
			walk_batch(OP_LOOKUP_AND_DELETE_BATCH, u::MAP_LOOKUP_AND_DELETE_BATCH, 2, 2);
			break;
		case 9:
			write_batch(OP_UPDATE_BATCH, u::MAP_UPDATE_BATCH);
			break;
		case 10:
			write_batch(OP_DELETE_BATCH, u::MAP_DELETE_BATCH);
			break;
		case 11:
			prog_lookup(false);
			break;
		case 12:
			prog_lookup(percpu(c_));
			break;
		case 13:
			if (h_) {
				make_value(v, m_.value_size);
				begin(OP_PROG_UPDATE);
				end(bpfmap_map_update_elem(h_, k, v, rng_() % 3));
			}
			break;
		case 14:
			if (h_) {
				begin(OP_PROG_DELETE);
				end(bpfmap_map_delete_elem(h_, k));
			}
			break;
		case 15:
			mmap_step();
			break;
		case 16:
			info_step();
			break;
		case 17:
		case 18:
			reopen_step();
			break;
		}
	}

	void info_step() { info_of(fd_); }

	long info_of(int fd, u::bpf_map_info *out = nullptr)
	{
		u::bpf_attr a{};
		u::bpf_map_info info{};
		a.info.bpf_fd = fd;
		a.info.info_len = sizeof(info);
		a.info.info = ptr(&info);
		begin(OP_INFO);
		long r = sys(u::OBJ_GET_INFO_BY_FD, a);
		end(r);
		if (out)
			*out = info;
		return r;
	}

	// mmap() of the map fd: the data area of an mmapable array (read and written through
	// the mapping, as a program would), a ring's pages; refused for the others.
	void mmap_step()
	{
		if (!mm_) {
			size_t len = PAGE;
			off_t off = 0;
			int prot = PROT_READ | PROT_WRITE;
			if (m_.flags & u::BPF_F_MMAPABLE)
				len = (static_cast<size_t>(m_.max_entries) * round_up8(m_.value_size) + PAGE - 1) / PAGE * PAGE;
			if (fam_ == RING) {
				len = PAGE + 2 * static_cast<size_t>(m_.max_entries); // producer page, data twice
				off = PAGE;
				prot = PROT_READ;
			}
			if (fam_ == USER_RING) {
				len = PAGE; // the consumer page, read-only to user space
				prot = PROT_READ;
			}
			begin(OP_MMAP);
			void *p = mmap(nullptr, len, prot, MAP_SHARED, fd_, off);
			end(p == MAP_FAILED ? -1 : 0);
			if (p == MAP_FAILED)
				return;
			mm_ = p;
			mm_len_ = len;
			mm_write_ = prot & PROT_WRITE;
			ranges_.load();
		}
		begin(OP_MMAP_ACCESS);
		size_t at = (rng_() % (mm_len_ / 8)) * 8;
		auto *w = reinterpret_cast<volatile uint64_t *>(static_cast<char *>(mm_) + at);
		uint64_t x = *w;
		if (mm_write_)
			*w = x + 1;
		end();
	}

	void keyless_step()
	{
		static const uint8_t mix[] = {0, 0, 0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 9, 10, 11};
		keyless_op(mix[rng_() % sizeof(mix)]);
	}

	void keyless_op(unsigned o)
	{
		char *v = reinterpret_cast<char *>(vbuf_.data());
		make_value(v, m_.value_size);
		void *k = kbuf_.data();
		switch (o) {
		case 0:
			elem_call(OP_PUSH, u::MAP_UPDATE_ELEM, nullptr, v, u::BPF_ANY);
			break;
		case 1:
			elem_call(OP_PUSH_EXIST, u::MAP_UPDATE_ELEM, nullptr, v, u::BPF_EXIST);
			break;
		case 2:
			elem_call(OP_PEEK, u::MAP_LOOKUP_ELEM, nullptr, v, 0);
			break;
		case 3:
			elem_call(OP_POP, u::MAP_LOOKUP_AND_DELETE_ELEM, nullptr, v, 0);
			break;
		case 4:
			if (h_) {
				begin(OP_PROG_PUSH);
				end(bpfmap_map_push_elem(h_, v, rng_() % 3 == 0 ? uint64_t{u::BPF_EXIST} : 0));
			}
			break;
		case 5:
			if (h_) {
				begin(OP_PROG_POP);
				end(bpfmap_map_pop_elem(h_, v));
			}
			break;
		case 6:
			if (h_) {
				begin(OP_PROG_PEEK);
				end(bpfmap_map_peek_elem(h_, v));
			}
			break;
		case 7: // commands the type refuses, and the program-side keyed ones
			elem_call(OP_DELETE, u::MAP_DELETE_ELEM, nullptr, nullptr, 0);
			elem_call(OP_GET_NEXT_KEY, u::MAP_GET_NEXT_KEY, nullptr, k, 0);
			walk_batch(OP_LOOKUP_BATCH, u::MAP_LOOKUP_BATCH, 2);
			if (h_) {
				begin(OP_PROG_LOOKUP);
				void *p = bpfmap_map_lookup_elem(h_, k);
				if (p)
					ranges_.check(p, m_.value_size, "PROG_LOOKUP");
				end(p ? 0 : -1);
			}
			break;
		case 8:
			info_step();
			break;
		case 9:
			mmap_step();
			break;
		case 10:
		case 11:
			reopen_step();
			break;
		}
	}

	int ring_epoll()
	{
		if (epfd_ < 0) {
			epfd_ = epoll_create1(EPOLL_CLOEXEC);
			if (epfd_ < 0)
				return -1;
			epoll_event ev{};
			ev.events = fam_ == RING ? EPOLLIN : EPOLLOUT;
			ev.data.u64 = 42;
			begin(OP_EPOLL_ADD);
			end(epoll_ctl(epfd_, EPOLL_CTL_ADD, fd_, &ev));
		}
		epoll_event evs[4];
		begin(OP_EPOLL_WAIT);
		int n = epoll_wait(epfd_, evs, 4, 0);
		end(n);
		return n;
	}

	void ring_step()
	{
		static const uint8_t mix[] = {0, 0, 1, 2, 2, 3, 4, 4, 5, 6, 7, 8, 9, 10};
		ring_op(mix[rng_() % sizeof(mix)]);
	}

	void ring_op(unsigned o)
	{
		size_t size = 1 + rng_() % 200;
		if (rng_() % 16 == 0)
			size = rng_() % (c_.max_entries + 64); // now and then too large
		char buf[512];
		switch (o) {
		case 0:
		case 1:
			if (!h_)
				break;
			if (rb_rec_) {
				bool submit = o == 0;
				begin(submit ? OP_RB_SUBMIT : OP_RB_DISCARD);
				if (submit)
					bpfmap_ringbuf_submit(rb_rec_, rng_() % 3);
				else
					bpfmap_ringbuf_discard(rb_rec_, rng_() % 3);
				end();
				rb_rec_ = nullptr;
				break;
			}
			begin(OP_RB_RESERVE);
			rb_rec_ = bpfmap_ringbuf_reserve(h_, size, 0);
			if (rb_rec_) {
				ranges_.check(rb_rec_, size, "RB_RESERVE");
				memset(rb_rec_, 0x5a, size);
			}
			end(rb_rec_ ? 0 : -1);
			break;
		case 2:
			if (h_) {
				memset(buf, 0x33, sizeof(buf));
				begin(OP_RB_OUTPUT);
				end(bpfmap_ringbuf_output(h_, buf, std::min(size, sizeof(buf)), rng_() % 3));
			}
			break;
		case 3:
			if (h_) {
				begin(OP_RB_QUERY);
				bpfmap_ringbuf_query(h_, rng_() % 5);
				end();
			}
			break;
		case 4:
		case 5:
			if (!consumer_) {
				auto c = std::make_unique<bpfmap::RingConsumer>();
				begin(OP_RB_CONSUMER_OPEN);
				int err = bpfmap::RingConsumer::open(
					fd_,
					[this](const void *data, size_t len) {
						ranges_.check(data, len, "ring consumer record");
						read_all(data, len);
						return 0;
					},
					*c);
				end(-err);
				if (err)
					break;
				consumer_ = std::move(c);
			}
			begin(o == 4 ? OP_RB_CONSUME : OP_RB_POLL);
			end(o == 4 ? consumer_->consume() : consumer_->poll(0));
			break;
		case 6:
			ring_epoll();
			break;
		case 7: // commands a ring refuses
			elem_call(OP_LOOKUP, u::MAP_LOOKUP_ELEM, nullptr, buf, 0);
			elem_call(OP_UPDATE_ANY, u::MAP_UPDATE_ELEM, nullptr, buf, 0);
			elem_call(OP_GET_NEXT_KEY, u::MAP_GET_NEXT_KEY, nullptr, buf, 0);
			break;
		case 8:
			info_step();
			break;
		case 9:
			mmap_step();
			break;
		case 10:
			reopen_step();
			break;
		}
	}

	void user_ring_step()
	{
		static const uint8_t mix[] = {0, 0, 1, 2, 2, 3, 4, 5, 6, 7};
		user_ring_op(mix[rng_() % sizeof(mix)]);
	}

	static long on_drain(const void *data, uint64_t size, void *ctx)
	{
		auto *w = static_cast<worker *>(ctx);
		w->ranges_.check(data, size, "user ring drain record");
		read_all(data, size);
		return w->rng_() % 16 == 0;
	}

	void user_ring_op(unsigned o)
	{
		size_t size = 1 + rng_() % 200;
		if (rng_() % 16 == 0)
			size = rng_() % (c_.max_entries + 64);
		switch (o) {
		case 0:
		case 1:
			if (!urb_open_) {
				begin(OP_URB_OPEN);
				int err = bpfmap::UserRingProducer::open(fd_, urb_);
				end(-err);
				if (err)
					break;
				urb_open_ = true;
			}
			if (urb_rec_) {
				begin(o == 0 ? OP_URB_SUBMIT : OP_URB_DISCARD);
				if (o == 0)
					urb_.submit(urb_rec_);
				else
					urb_.discard(urb_rec_);
				end();
				urb_rec_ = nullptr;
				break;
			}
			{
				int err = 0;
				begin(OP_URB_RESERVE);
				urb_rec_ = urb_.reserve(size, &err);
				if (urb_rec_) {
					ranges_.check(urb_rec_, size, "URB_RESERVE");
					memset(urb_rec_, 0x6b, size);
				}
				end(urb_rec_ ? 0 : -1);
			}
			break;
		case 2:
			if (h_) {
				begin(OP_URB_DRAIN);
				end(bpfmap_user_ringbuf_drain(h_, on_drain, this, rng_() % 3));
			}
			break;
		case 3:
			ring_epoll();
			break;
		case 4: {
			char buf[64];
			elem_call(OP_LOOKUP, u::MAP_LOOKUP_ELEM, nullptr, buf, 0);
			elem_call(OP_GET_NEXT_KEY, u::MAP_GET_NEXT_KEY, nullptr, buf, 0);
			break;
		}
		case 5:
			info_step();
			break;
		case 6:
			mmap_step();
			break;
		case 7:
			reopen_step();
			break;
		}
	}

	const map_case &c_; // the map as it was made
	map_case m_;	    // the map as this fd's info says it is
	int fd_;
	progress &p_;
	const shared_page &sh_;
	std::mt19937_64 rng_;
	family fam_;
	uint32_t ncpu_ = 1;
	size_t vsz_ = 0; // a value as the syscalls copy it
	bool broken_ = false;
	std::vector<uint64_t> kbuf_, kbuf2_, vbuf_;
	uint32_t batch_count_ = 0;
	bpfmap_map *h_ = nullptr;
	region_ranges ranges_;
	void *rb_rec_ = nullptr;
	std::unique_ptr<bpfmap::RingConsumer> consumer_;
	bpfmap::UserRingProducer urb_;
	bool urb_open_ = false;
	void *urb_rec_ = nullptr;
	int epfd_ = -1;
	void *mm_ = nullptr;
	size_t mm_len_ = 0;
	bool mm_write_ = false;
};

// The worker: runs commands on the inherited fd until told to stop.
[[noreturn]] void worker_main(const map_case &c, int fd, shared_page *sh, uint64_t seed)
{
	child_setup(&sh->worker);
	{
		worker w(c, fd, sh->worker, *sh, seed);
		sh->worker.ready.store(1);
		while (!sh->stop.load(std::memory_order_relaxed))
			w.step();
	}
	_exit(0);
}

// The attacher: holds no handle of the map, so each open attaches to the region anew.
// inherited_fd: the parent's fd of the map, if it had one at the fork; closing it drops the
// handle inherited with it, so that the attacher holds none.
[[noreturn]] void attacher_main(const map_case &c, shared_page *sh, uint64_t seed, bool once_per_seq,
				int inherited_fd = -1)
{
	child_setup(&sh->attacher);
	if (inherited_fd >= 0)
		close(inherited_fd);
	sh->attacher.ready.store(1);
	std::mt19937_64 rng(seed);
	uint64_t deadline = now_ns() + 30 * SECOND_NS;
	while (!sh->go.load() && !sh->stop.load() && now_ns() < deadline)
		usleep(200);
	uint32_t seen = 0;
	for (unsigned i = 0; !sh->stop.load(std::memory_order_relaxed); i++) {
		if (once_per_seq) {
			uint32_t s = sh->seq.load();
			if (s == seen) {
				usleep(50);
				continue;
			}
			seen = s;
		}
		for (bool by_pin : {true, false}) {
			progress &p = sh->attacher;
			p.op.store(by_pin ? OP_OBJ_GET : OP_GET_FD_BY_ID);
			p.start_ns.store(now_ns());
			u::bpf_attr a{};
			if (by_pin)
				a.obj.pathname = ptr(sh->pin);
			else
				a.id.map_id = sh->map_id;
			int fd = static_cast<int>(sys(by_pin ? u::OBJ_GET : u::MAP_GET_FD_BY_ID, a));
			p.start_ns.store(0);
			p.calls.fetch_add(1);
			p.op_calls[p.op.load()].fetch_add(1);
			if (fd < 0)
				p.op_errors[p.op.load()].fetch_add(1);
			if (fd < 0)
				continue;
			{
				worker w(c, fd, p, *sh, rng());
				if (once_per_seq)
					w.each_once();
				else
					for (int j = 0; j < 8; j++)
						w.step();
			}
			p.op.store(OP_CLOSE);
			p.start_ns.store(now_ns());
			close(fd);
			p.start_ns.store(0);
			p.calls.fetch_add(1);
			if (!once_per_seq && (i & 1))
				break;
		}
		if (once_per_seq)
			sh->done.store(seen);
	}
	_exit(0);
}

// ---- the parent side: scribbler and watchdog ----

struct child {
	const char *role;
	pid_t pid = -1;
	progress *p = nullptr;
	bool exited = false;
};

struct round_result {
	int crash = 0, hang = 0, exit = 0, oob = 0;
	uint64_t calls = 0;
	std::string report;
	bool failed() const { return crash + hang + exit + oob > 0; }
};

void gdb_backtrace(pid_t pid)
{
	if (!getenv("BPFMAP_SCRIBBLE_GDB"))
		return;
	std::string cmd = "gdb -p " + std::to_string(pid) +
			  " -batch -nx -ex 'thread apply all bt' 2>/dev/null 1>&2";
	(void)!system(cmd.c_str());
}

class watchdog {
public:
	watchdog(const map_case &c, uint64_t seed, round_result &res) : c_(c), seed_(seed), res_(res) {}

	void add(child &ch) { kids_.push_back(&ch); }

	// Looks at each child once: false when one failed (and is gone).
	bool check(bool stopping)
	{
		bool ok = true;
		for (child *ch : kids_) {
			if (ch->exited || ch->pid < 0)
				continue;
			int status;
			pid_t r = waitpid(ch->pid, &status, WNOHANG);
			if (r == ch->pid) {
				ch->exited = true;
				if (WIFSIGNALED(status)) {
					fail(*ch, "crash", res_.crash,
					     std::string("killed by signal ") + std::to_string(WTERMSIG(status)) +
						     " (" + strsignal(WTERMSIG(status)) + ")");
					ok = false;
				} else if (WEXITSTATUS(status) == EXIT_OOB) {
					fail(*ch, "oob", res_.oob, "a returned pointer lies outside the map");
					ok = false;
				} else if (SANITIZED && WEXITSTATUS(status) == 1) {
					// A sanitizer reports a fault itself and exits with 1.
					fail(*ch, "crash", res_.crash, "sanitizer report (above)");
					ok = false;
				} else if (WEXITSTATUS(status) != 0 || !stopping) {
					fail(*ch, "exit", res_.exit,
					     "exited with status " + std::to_string(WEXITSTATUS(status)) +
						     (stopping ? "" : " before it was told to stop"));
					ok = false;
				}
				continue;
			}
			uint64_t start = ch->p->start_ns.load(std::memory_order_acquire);
			uint64_t now = now_ns();
			if (start && now > start && now - start > hang_ns()) {
				fail(*ch, "hang", res_.hang,
				     "one call in progress for " + std::to_string((now - start) / 1000000) + " ms");
				kill(ch->pid, SIGUSR2); // the child prints where it is
				usleep(200000);
				gdb_backtrace(ch->pid);
				kill(ch->pid, SIGKILL);
				waitpid(ch->pid, &status, 0);
				ch->exited = true;
				ok = false;
			}
		}
		return ok;
	}

	bool all_exited() const
	{
		for (child *ch : kids_)
			if (!ch->exited && ch->pid >= 0)
				return false;
		return true;
	}

	void kill_all()
	{
		for (child *ch : kids_)
			if (!ch->exited && ch->pid >= 0) {
				kill(ch->pid, SIGKILL);
				waitpid(ch->pid, nullptr, 0);
				ch->exited = true;
			}
	}

private:
	void fail(const child &ch, const char *kind, int &count, const std::string &what)
	{
		count++;
		op o = static_cast<op>(ch.p->op.load());
		// A call in progress, or (when the child died between calls) the last one.
		bool in_call = ch.p->start_ns.load() != 0;
		char line[512];
		snprintf(line, sizeof(line),
			 "SCRIBBLE-FAIL type=%s kind=%s child=%s %s=%s calls=%" PRIu64 " seed=%" PRIu64 ": %s\n"
			 "  replay: BPFMAP_SCRIBBLE_SEED=%" PRIu64 " BPFMAP_SCRIBBLE_ROUNDS=1 "
			 "scribble_test --gtest_filter='*/%s'\n",
			 c_.name, kind, ch.role, in_call ? "op" : "after", o < OP_COUNT ? OP_NAMES[o] : "?", ch.p->calls.load(), seed_,
			 what.c_str(), seed_, c_.name);
		fputs(line, stderr);
		res_.report += line + strlen("SCRIBBLE-FAIL ");
		if (const char *path = getenv("BPFMAP_SCRIBBLE_FAILURES"))
			if (FILE *f = fopen(path, "ae")) {
				fputs(line, f);
				fclose(f);
			}
	}

	const map_case &c_;
	uint64_t seed_;
	round_result &res_;
	std::vector<child *> kids_;
};

// Writes random words over the map's file: pwrite() on the map fd, or stores through a
// shared mapping of it made with the raw syscall (the library's mmap() would apply the
// map's own mmap rules).
class scribbler {
public:
	scribbler(int fd, uint64_t seed) : fd_(fd), rng_(seed)
	{
		size_ = static_cast<size_t>(lseek(fd, 0, SEEK_END));
		if (rng_() & 1) {
			void *p = reinterpret_cast<void *>(
				syscall(SYS_mmap, nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
			if (p != MAP_FAILED)
				mem_ = static_cast<char *>(p);
		}
	}
	~scribbler()
	{
		if (mem_)
			syscall(SYS_munmap, mem_, size_);
	}
	size_t size() const { return size_; }
	const char *how() const { return mem_ ? "mmap" : "pwrite"; }

	// A few words, at offsets weighted towards the header page (the last one), whose
	// control block holds the positions, heads and counts the families index with.
	void scribble()
	{
		for (int n = 1 + rng_() % 3; n > 0; n--)
			one_word();
	}

	void write_at(size_t off, const void *w, size_t len)
	{
		if (off + len > size_)
			return;
		if (mem_)
			memcpy(mem_ + off, w, len); // a racy store, as another process's would be
		else
			(void)!pwrite(fd_, w, len, static_cast<off_t>(off));
	}
	void read_at(size_t off, void *w, size_t len)
	{
		if (off + len > size_)
			memset(w, 0, len);
		else if (mem_)
			memcpy(w, mem_ + off, len);
		else if (pread(fd_, w, len, static_cast<off_t>(off)) != static_cast<ssize_t>(len))
			memset(w, 0, len);
	}

	uint64_t value(uint64_t old)
	{
		switch (rng_() % 7) {
		case 0:
			return 0;
		case 1:
			return ~0ull;
		case 2:
			return rng_() % 65;
		case 3:
			return static_cast<uint32_t>(rng_());
		case 4:
			return rng_();
		case 5:
			return old ^ (1ull << (rng_() % 64));
		default:
			return old + 1 + rng_() % 64;
		}
	}

private:
	void one_word()
	{
		size_t hdr = size_ - PAGE, off;
		unsigned where = rng_() % 10;
		if (where < 1)
			off = hdr + rng_() % 256; // the generic header
		else if (where < 4)
			off = hdr + 256 + rng_() % 768; // the control block
		else if (where < 5)
			off = hdr + rng_() % PAGE;
		else
			off = rng_() % size_;
		size_t len = rng_() % 3 ? 8 : 4;
		if (rng_() % 8)
			off &= ~(len - 1);
		off = std::min(off, size_ - len);
		uint64_t old = 0;
		read_at(off, &old, len);
		uint64_t v = value(old);
		write_at(off, &v, len);
	}

	int fd_;
	std::mt19937_64 rng_;
	size_t size_ = 0;
	char *mem_ = nullptr;
};

// Calls and failed calls per op and child: what a round covered.
void print_stats(const map_case &c, const shared_page &sh)
{
	fprintf(stderr, "%s: op (worker calls/failed, attacher calls/failed)\n", c.name);
	for (unsigned o = 1; o < OP_COUNT; o++) {
		const progress &w = sh.worker, &a = sh.attacher;
		if (w.op_calls[o] || a.op_calls[o])
			fprintf(stderr, "  %-24s %8u/%-8u %8u/%-8u\n", OP_NAMES[o], w.op_calls[o].load(),
				w.op_errors[o].load(), a.op_calls[o].load(), a.op_errors[o].load());
	}
}

// The progress page, between two inaccessible pages: mmap() tends to place the map's region
// right next to it, and a write past the region's end must fault, not change the
// children's progress (a worker once read a stop it was never sent).
shared_page *shared_page_new()
{
	void *p = mmap(nullptr, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return nullptr;
	char *mid = static_cast<char *>(p) + PAGE;
	mprotect(p, PAGE, PROT_NONE);
	mprotect(mid + PAGE, PAGE, PROT_NONE);
	return new (mid) shared_page();
}

void shared_page_free(shared_page *sh) { munmap(reinterpret_cast<char *>(sh) - PAGE, 3 * PAGE); }

int create_map(const map_case &c)
{
	return map_create(c.type, c.key_size, c.value_size, c.max_entries, c.flags, "scribble", c.extra);
}

uint32_t map_id_of(int fd)
{
	u::bpf_attr a{};
	u::bpf_map_info info{};
	a.info.bpf_fd = fd;
	a.info.info_len = sizeof(info);
	a.info.info = ptr(&info);
	return sys(u::OBJ_GET_INFO_BY_FD, a) == 0 ? info.id : 0;
}

long pin(int fd, const char *path)
{
	u::bpf_attr a{};
	a.obj.pathname = ptr(path);
	a.obj.bpf_fd = fd;
	return sys(u::OBJ_PIN, a);
}

// A new map with some contents, before anyone scribbles.
void populate(const map_case &c, int fd)
{
	std::vector<char> v(static_cast<size_t>(bpfmap_num_possible_cpus()) * 16 + 64, 7);
	switch (family_of(c)) {
	case KEYED:
		for (uint32_t i = 0; i < c.max_entries; i++) {
			uint64_t k = i;
			if (c.type == u::MAP_TYPE_LPM_TRIE) {
				uint32_t lk[2] = {24, __builtin_bswap32(0x0a000000u | (i << 8))};
				memcpy(&k, lk, 8);
			}
			update(fd, &k, v.data());
		}
		break;
	case KEYLESS:
		for (uint32_t i = 0; i < c.max_entries / 2; i++)
			update(fd, nullptr, v.data());
		break;
	default:
		break;
	}
}

std::string pin_path(const map_case &c, int round)
{
	return private_pin_root() + "/scribble-" + c.name + "-" + std::to_string(getpid()) + "-" +
	       std::to_string(round);
}

round_result run_round(const map_case &c, int round, uint64_t seed, uint64_t ms)
{
	round_result res;
	shared_page *sh = shared_page_new();
	if (!sh) {
		res.exit++;
		res.report = "no shared page";
		return res;
	}
	std::mt19937_64 rng(seed);
	child att{"attacher"}, wrk{"worker"};
	att.p = &sh->attacher;
	wrk.p = &sh->worker;
	fflush(nullptr);
	// The attacher comes first: it must hold no handle of the map.
	uint64_t att_seed = rng(), wrk_seed = rng(), scr_seed = rng();
	att.pid = fork();
	if (att.pid == 0)
		attacher_main(c, sh, att_seed, false);
	int fd = create_map(c);
	watchdog dog(c, seed, res);
	dog.add(att);
	if (fd < 0) {
		res.exit++;
		res.report = "map create failed: " + std::to_string(fd);
		sh->stop.store(1);
		dog.kill_all();
		return res;
	}
	populate(c, fd);
	std::string path = pin_path(c, round);
	pin(fd, path.c_str());
	snprintf(sh->pin, sizeof(sh->pin), "%s", path.c_str());
	sh->map_id = map_id_of(fd);
	wrk.pid = fork();
	if (wrk.pid == 0)
		worker_main(c, fd, sh, wrk_seed);
	dog.add(wrk);
	sh->go.store(1);
	{
		scribbler s(fd, scr_seed);
		uint64_t end = now_ns() + ms * 1000000;
		bool ok = true;
		bool dry = getenv("BPFMAP_SCRIBBLE_DRY");
		while (ok && now_ns() < end) {
			if (!dry)
				s.scribble();
			usleep(2000);
			ok = dog.check(false);
		}
		sh->stop.store(1);
		// Calls in flight must still end within the limit; the children then exit.
		uint64_t give_up = now_ns() + 3 * hang_ns();
		while (!dog.all_exited() && now_ns() < give_up) {
			dog.check(true);
			usleep(1000);
		}
		if (!dog.all_exited()) {
			res.hang++;
			res.report += "a child did not exit within 3 s of the stop\n";
		}
		dog.kill_all();
	}
	res.calls = sh->worker.calls.load() + sh->attacher.calls.load();
	if (getenv("BPFMAP_SCRIBBLE_STATS"))
		print_stats(c, *sh);
	unlink(path.c_str());
	close(fd);
	shared_page_free(sh);
	return res;
}

uint64_t base_seed()
{
	static const uint64_t s = env_u64("BPFMAP_SCRIBBLE_SEED", 0) ?: splitmix(now_ns() ^ getpid());
	return s;
}

int default_rounds() { return SANITIZED ? 1 : 3; }

// ThreadSanitizer sees no race between processes, and every process here runs one thread:
// under it this test would only be slow.
class Scribble : public testing::TestWithParam<map_case> {
protected:
	void SetUp() override
	{
#if defined(__SANITIZE_THREAD__)
		GTEST_SKIP() << "single-threaded processes racing through shared memory: nothing for TSan";
#endif
	}
};

TEST_P(Scribble, Rounds)
{
	const map_case &c = GetParam();
	int rounds = static_cast<int>(env_u64("BPFMAP_SCRIBBLE_ROUNDS", default_rounds()));
	uint64_t ms = env_u64("BPFMAP_SCRIBBLE_MS", 600);
	round_result total;
	int failed_rounds = 0;
	for (int r = 0; r < rounds; r++) {
		// Round 0 runs with the seed given, so that a failed round replays alone.
		uint64_t seed = r == 0 ? base_seed() : splitmix(base_seed() + r * 0x9e3779b97f4a7c15ull);
		round_result res = run_round(c, r, seed, ms);
		total.crash += res.crash;
		total.hang += res.hang;
		total.exit += res.exit;
		total.oob += res.oob;
		total.calls += res.calls;
		if (res.failed()) {
			failed_rounds++;
			ADD_FAILURE() << "round " << r << " (seed " << seed << "):\n" << res.report;
		}
	}
	fprintf(stderr,
		"SCRIBBLE-SUMMARY type=%s rounds=%d failed=%d crash=%d hang=%d exit=%d oob=%d calls=%" PRIu64 "\n",
		c.name, rounds, failed_rounds, total.crash, total.hang, total.exit, total.oob, total.calls);
}

// One word of the header page at a time, then a process that never held the map opens it.
TEST_P(Scribble, HeaderAttach)
{
	const map_case &c = GetParam();
	uint64_t seed = base_seed();
	shared_page *sh = shared_page_new();
	ASSERT_NE(sh, nullptr);
	round_result res;
	child att{"attacher"};
	att.p = &sh->attacher;
	int fd = -1;
	auto spawn = [&] {
		fflush(nullptr);
		att.exited = false;
		att.p->start_ns.store(0);
		att.pid = fork();
		if (att.pid == 0)
			attacher_main(c, sh, seed + att.p->calls.load(), true, fd);
	};
	spawn();
	watchdog dog(c, seed, res);
	dog.add(att);
	fd = create_map(c);
	ASSERT_GE(fd, 0);
	populate(c, fd);
	std::string path = pin_path(c, 999);
	ASSERT_EQ(pin(fd, path.c_str()), 0);
	snprintf(sh->pin, sizeof(sh->pin), "%s", path.c_str());
	sh->map_id = map_id_of(fd);
	sh->go.store(1);
	scribbler s(fd, seed);
	size_t hdr = s.size() - PAGE;
	// Each try starts from the map as it was: a failure then names the one word that
	// caused it, not what an earlier try left behind.
	std::vector<char> snapshot(s.size());
	s.read_at(0, snapshot.data(), snapshot.size());
	std::mt19937_64 rng(seed);
	uint32_t seq = 0;
	unsigned tries = 0, failures = 0;
	// A failure is reported and the next word tried with a new attacher (which never held
	// the map either: it is forked from this process, which holds the map's fd but makes no
	// calls on it, and drops what it inherited first).
	for (size_t off = hdr; failures < 16 && off < hdr + 1024; off += 4) {
		uint32_t orig;
		s.read_at(off, &orig, 4);
		uint32_t vals[] = {0, ~0u, orig ^ (1u << (rng() % 32)), 1, 64, static_cast<uint32_t>(rng())};
		// Under the sanitizers (each try several times slower) the first three only.
		for (size_t i = 0; i < (SANITIZED ? 3 : std::size(vals)); i++) {
			uint32_t v = vals[i];
			if (v == orig)
				continue;
			s.write_at(off, &v, 4);
			sh->seq.store(++seq);
			tries++;
			bool ok = true;
			while (ok && sh->done.load() != seq) {
				usleep(20);
				ok = dog.check(false);
			}
			s.write_at(0, snapshot.data(), snapshot.size());
			if (!ok) {
				char at[96];
				snprintf(at, sizeof(at), "  (header page offset %zu set to %#x)\n", off - hdr, v);
				fputs(at, stderr);
				res.report += at;
				failures++;
				spawn();
			}
		}
	}
	sh->stop.store(1);
	uint64_t give_up = now_ns() + 3 * hang_ns();
	while (!dog.all_exited() && now_ns() < give_up) {
		dog.check(true);
		usleep(1000);
	}
	dog.kill_all();
	unlink(path.c_str());
	close(fd);
	EXPECT_FALSE(res.failed()) << res.report;
	fprintf(stderr, "SCRIBBLE-SUMMARY type=%s header-attach tries=%u crash=%d hang=%d exit=%d oob=%d\n",
		c.name, tries, res.crash, res.hang, res.exit, res.oob);
	shared_page_free(sh);
}

INSTANTIATE_TEST_SUITE_P(Types, Scribble, testing::ValuesIn(CASES),
			 [](const testing::TestParamInfo<map_case> &i) { return std::string(i.param.name); });

} // namespace
