// The children of the scribbling test (scribble_test.cc): the worker, which runs every
// command of a map's type in a random mix, and the attacher, which opens the map anew again
// and again; both publish each call in the shared page and report crashes from their own
// signal handlers.
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
#include "scribble.h"

namespace scribble {
namespace {

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
			if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &lo, &hi, perms, &off, &maj,
				   &min, &inode) == 7 &&
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
		snprintf(buf, sizeof(buf),
			 "scribble child %d: %s gave %p (+%zu), outside the map's mappings\n",
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
		: c_(c)
		, m_(c)
		, fd_(fd)
		, p_(p)
		, sh_(sh)
		, rng_(seed)
		, fam_(family_of(c))
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
		call(OP_LOOKUP,
		     [&] { return lookup(fd, fam_ == KEYED ? k : nullptr, vbuf_.data()); });
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
			return static_cast<int>(
				call(OP_OBJ_GET, [&] { return sys(u::OBJ_GET, a); }));
		}
		a.id.map_id = sh_.map_id;
		return static_cast<int>(
			call(OP_GET_FD_BY_ID, [&] { return sys(u::MAP_GET_FD_BY_ID, a); }));
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
		uint32_t n =
			static_cast<uint32_t>(rng_() % (c_.max_entries + c_.max_entries / 2 + 1));
		if (m_.key_size < c_.key_size)
			return k; // zeros
		if (c_.type == u::MAP_TYPE_LPM_TRIE) {
			static const uint32_t lens[] = {0, 8, 16, 24, 32, 32, 32, 20};
			uint32_t lk[2] = {lens[rng_() % 8],
					  __builtin_bswap32(0x0a000000u | (n << 8) | (n & 3))};
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
			b[i] = static_cast<unsigned char>(x >> (8 * (i & 7))) +
			       static_cast<unsigned char>(i);
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
			if (elem_call(OP_GET_NEXT_KEY, u::MAP_GET_NEXT_KEY,
				      first ? nullptr : kbuf_.data(), kbuf2_.data(), 0))
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
			p = bpfmap_map_lookup_percpu_elem(
				h_, k, static_cast<uint32_t>(rng_() % (ncpu_ + 1)));
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
		static const uint8_t mix[] = {0, 0, 1,	1,  1,	2,  3,	3,  4,	5,  6,	7,
					      8, 9, 10, 11, 12, 13, 13, 14, 15, 16, 17, 18};
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
			walk_batch(OP_LOOKUP_BATCH, u::MAP_LOOKUP_BATCH,
				   2 * c_.max_entries / 8 + 4);
			break;
		case 8: // a short walk: the map is to stay populated
			walk_batch(OP_LOOKUP_AND_DELETE_BATCH, u::MAP_LOOKUP_AND_DELETE_BATCH, 2,
				   2);
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
				len = (static_cast<size_t>(m_.max_entries) *
					       round_up8(m_.value_size) +
				       PAGE - 1) /
				      PAGE * PAGE;
			if (fam_ == RING) {
				len = PAGE +
				      2 * static_cast<size_t>(
						  m_.max_entries); // producer page, data twice
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
				end(bpfmap_map_push_elem(
					h_, v, rng_() % 3 == 0 ? uint64_t{u::BPF_EXIST} : 0));
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
				end(bpfmap_ringbuf_output(h_, buf, std::min(size, sizeof(buf)),
							  rng_() % 3));
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

} // namespace

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
[[noreturn]] void attacher_main(const map_case &c, shared_page *sh, uint64_t seed,
				bool once_per_seq, int inherited_fd)
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
			int fd =
				static_cast<int>(sys(by_pin ? u::OBJ_GET : u::MAP_GET_FD_BY_ID, a));
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

} // namespace scribble
