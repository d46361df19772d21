#include "core/lock.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace bpfmap {
namespace {

// The kernel's struct robust_list_head.
struct robust_head {
	robust_link list;
	long futex_offset;
	robust_link *list_op_pending;
};

// Where the kernel looks for a lock's word, relative to the link on the list.
constexpr long LOCK_FUTEX_OFFSET =
	static_cast<long>(offsetof(shared_lock, word)) - static_cast<long>(offsetof(shared_lock, link));

// How long a locker spins before it sleeps, and how long a sleep lasts at most: a sleeper
// wakes at the latest this long after the lock came free, or its holder died, without a
// wake-up (see the header).
constexpr int SPINS = 100;
constexpr long SLEEP_NS = 1000 * 1000;

// A waiter that has seen the same word this long asks whether the thread it names can
// still unlock it (holder_may_unlock), and asks again this often while the answer is yes.
// Holds are microseconds long; the first check is what a word naming no holder costs.
constexpr uint64_t FIRST_CHECK_NS = 10 * 1000 * 1000;
constexpr uint64_t RECHECK_NS = 100 * 1000 * 1000;

// No thread id reaches this (the kernel's PID_MAX_LIMIT on 64-bit machines).
constexpr uint32_t PID_MAX_LIMIT = 4 * 1024 * 1024;

struct thread_state {
	uint32_t tid;      // 0 until first use, and again in a fork child
	uint32_t tgid;
	robust_head *head; // this thread's robust list; null if we cannot join it
};
thread_local thread_state self [[gnu::tls_model("initial-exec")]];

void cpu_relax()
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

void forget_thread_state() { self.tid = 0; }

[[gnu::constructor]] void register_fork_handler()
{
	// A fork child is a new thread with the same robust list head but a new tid.
	pthread_atfork(nullptr, nullptr, forget_thread_state);
}

// Join the robust list the C library registered, if its entries have our layout (they do
// for glibc: the list links sit where a pthread mutex keeps them). Otherwise locks still
// work but a holder's death is noticed only by the waiters' checks (acquire_slow).
[[gnu::noinline]] void init_thread_state()
{
	self.tid = static_cast<uint32_t>(syscall(SYS_gettid));
	self.tgid = static_cast<uint32_t>(getpid());
	robust_head *head = nullptr;
	size_t len = 0;
	self.head = nullptr;
	if (syscall(SYS_get_robust_list, 0, &head, &len) == 0 && head &&
	    len == sizeof(robust_head) && head->futex_offset == LOCK_FUTEX_OFFSET)
		self.head = head;
}

thread_state &current()
{
	if (__builtin_expect(self.tid == 0, 0))
		init_thread_state();
	return self;
}

// Every list member keeps its prev pointer just before its link; the C library marks
// priority-inheritance entries with bit 0 of the pointers to them.
robust_link **prev_slot(robust_link *l)
{
	auto p = reinterpret_cast<uintptr_t>(l) & ~uintptr_t{1};
	return reinterpret_cast<robust_link **>(p) - 1;
}

// The kernel reads the list only once this thread has stopped, so program order is all
// that matters: compiler barriers, no fences.
void barrier() { std::atomic_signal_fence(std::memory_order_seq_cst); }

void link_in(robust_head *h, shared_lock *l)
{
	robust_link *first = h->list.next;
	l->link.next = first;
	l->prev = &h->list;
	*prev_slot(first) = &l->link;
	barrier();
	h->list.next = &l->link;
}

void unlink(shared_lock *l)
{
	robust_link *next = l->link.next, *prev = l->prev;
	*prev_slot(next) = prev;
	prev->next = next;
}

// ---- who may hold a lock -------------------------------------------------------------------
//
// A lock word names its holder by thread id, numbered as the holder's PID namespace
// numbers threads, and kill() and /proc below read it as the caller's namespace numbers
// them. This assumes that every sharer of a region is in the caller's PID namespace,
// which bpfmap makes so by refusing, at attach, a sharer from another one (a thread id
// from another namespace could name a live thread here, or none). That /proc is this
// namespace's is checked before it is believed.
//
// A word is taken over when it cannot be a holder's: it names the caller itself (locks
// do not nest on one thread), a number above any thread id, a thread that does not exist,
// or one whose process does not map the lock's memory (a kernel thread, init, any unrelated
// process: a holder must have written the word). Anything that cannot be decided counts
// as a holder: a live thread of a process that maps the memory (this one included), or
// one whose memory map we may not read (another user's, when we are not root).

uint64_t monotonic_ns()
{
	timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return static_cast<uint64_t>(t.tv_sec) * 1000000000 + static_cast<uint64_t>(t.tv_nsec);
}

bool thread_gone(uint32_t tid) { return kill(static_cast<pid_t>(tid), 0) != 0 && errno == ESRCH; }

// Whether /proc numbers processes as this process's namespace does (it need not: a
// process in a new PID namespace may still see its parent's /proc).
bool proc_is_ours()
{
	char buf[16];
	ssize_t n = readlink("/proc/self", buf, sizeof(buf) - 1);
	if (n <= 0)
		return false;
	buf[n] = 0;
	return strtol(buf, nullptr, 10) == getpid();
}

// Call fn on each line of a /proc maps file (NUL-terminated; only the start of a line
// longer than the buffer) until it returns true. 1 if it did, 0 at the end, -errno.
template <typename F> int scan_lines(const char *path, F &&fn)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char buf[4096];
	size_t have = 0;
	bool rest_of_long_line = false;
	int ret = 0;
	for (;;) {
		ssize_t r = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			ret = r < 0 ? -errno : 0;
			break;
		}
		have += static_cast<size_t>(r);
		size_t start = 0;
		char *nl;
		while ((nl = static_cast<char *>(memchr(buf + start, '\n', have - start)))) {
			*nl = 0;
			if (!rest_of_long_line && fn(buf + start)) {
				ret = 1;
				goto out;
			}
			rest_of_long_line = false;
			start = static_cast<size_t>(nl - buf) + 1;
		}
		memmove(buf, buf + start, have - start);
		have -= start;
		if (have == sizeof(buf) - 1) {
			buf[have] = 0;
			if (!rest_of_long_line && fn(buf)) {
				ret = 1;
				break;
			}
			rest_of_long_line = true;
			have = 0;
		}
	}
out:
	close(fd);
	return ret;
}

// A mapping as /proc/PID/maps shows it: the memory object behind it and whether writes to
// it are shared.
struct mapping {
	unsigned long start, end, ino;
	unsigned maj, min;
	bool shared;
};

bool parse_mapping(const char *line, mapping *m)
{
	char perms[5];
	if (sscanf(line, "%lx-%lx %4s %*x %x:%x %lu", &m->start, &m->end, perms, &m->maj, &m->min,
		   &m->ino) != 6)
		return false;
	m->shared = perms[3] == 's';
	return true;
}

// Whether the thread tid (not the caller) may still unlock the lock at addr.
[[gnu::noinline]] bool holder_may_unlock(const void *addr, uint32_t tid)
{
	if (thread_gone(tid))
		return false;
	if (!proc_is_ours())
		return true;
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/task/%u", tid);
	if (access(path, F_OK) == 0)
		return true;
	auto a = reinterpret_cast<unsigned long>(addr);
	mapping mine{};
	int r = scan_lines("/proc/self/maps", [&](const char *line) {
		return parse_mapping(line, &mine) && mine.start <= a && a < mine.end;
	});
	if (r != 1)
		return true;
	// Memory only this process writes: only its threads hold locks there.
	if (!mine.shared || mine.ino == 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%u/maps", tid);
	r = scan_lines(path, [&](const char *line) {
		mapping m;
		return parse_mapping(line, &m) && m.shared && m.ino == mine.ino && m.maj == mine.maj &&
		       m.min == mine.min;
	});
	if (r < 0)
		return !thread_gone(tid);
	return r == 1;
}

long futex(std::atomic<uint32_t> *word, int op, uint32_t val, const timespec *timeout)
{
	// Not FUTEX_PRIVATE: the word is shared between processes.
	return syscall(SYS_futex, reinterpret_cast<uint32_t *>(word), op, val, timeout, nullptr, 0);
}

// Take the word to tid from free (0), from dead-owner (FUTEX_OWNER_DIED), or from a
// holder that cannot unlock it (see above). Returns whether the previous owner died or
// was taken over.
[[gnu::noinline]] bool acquire_slow(shared_lock *l, uint32_t tid)
{
	uint32_t watched = 0;
	uint64_t check_at = 0;
	int spins = 0;
	for (;;) {
		uint32_t w = l->word.load(std::memory_order_relaxed);
		uint32_t holder = w & FUTEX_TID_MASK;
		if (holder == 0) {
			if (l->word.compare_exchange_weak(w, tid, std::memory_order_acquire,
							  std::memory_order_relaxed))
				return w & FUTEX_OWNER_DIED;
			continue;
		}
		if (holder == tid || holder >= PID_MAX_LIMIT) {
			if (l->word.compare_exchange_weak(w, tid, std::memory_order_acquire,
							  std::memory_order_relaxed))
				return true;
			continue;
		}
		if (spins < SPINS) {
			spins++;
			cpu_relax();
			continue;
		}
		uint64_t now = monotonic_ns();
		if (w != watched) {
			watched = w;
			check_at = now + FIRST_CHECK_NS;
		} else if (now >= check_at) {
			if (!holder_may_unlock(l, holder)) {
				if (l->word.compare_exchange_strong(w, tid, std::memory_order_acquire,
								    std::memory_order_relaxed))
					return true;
				continue;
			}
			check_at = monotonic_ns() + RECHECK_NS;
		}
		l->sleepers.fetch_add(1, std::memory_order_seq_cst);
		timespec t{0, SLEEP_NS};
		futex(&l->word, FUTEX_WAIT, w, &t);
		l->sleepers.fetch_sub(1, std::memory_order_relaxed);
	}
}

} // namespace

void shared_lock::init()
{
	word.store(0, std::memory_order_relaxed);
	sleepers.store(0, std::memory_order_relaxed);
	prev = nullptr;
	link.next = nullptr;
}

bool shared_lock::lock()
{
	thread_state &me = current();
	robust_head *h = me.head;
	// Pending first: if we die between taking the word and linking, the kernel still
	// finds this lock.
	if (h) {
		h->list_op_pending = &link;
		barrier();
	}
	uint32_t w = 0;
	bool died = false;
	if (!word.compare_exchange_strong(w, me.tid, std::memory_order_acquire, std::memory_order_relaxed))
		died = acquire_slow(this, me.tid);
	if (h) {
		barrier();
		link_in(h, this);
		barrier();
		h->list_op_pending = nullptr;
	}
	return died;
}

void shared_lock::unlock()
{
	robust_head *h = self.head;
	if (h) {
		h->list_op_pending = &link;
		barrier();
		unlink(this);
		barrier();
	}
	word.store(0, std::memory_order_release);
	if (h) {
		barrier();
		h->list_op_pending = nullptr;
	}
	if (sleepers.load(std::memory_order_relaxed))
		futex(&word, FUTEX_WAKE, 1, nullptr);
}

thread_id current_thread()
{
	thread_state &me = current();
	return {me.tgid, me.tid};
}

bool thread_alive(thread_id t)
{
	return syscall(SYS_tgkill, t.tgid, t.tid, 0) == 0 || errno != ESRCH;
}

} // namespace bpfmap
