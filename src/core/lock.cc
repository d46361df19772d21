#include "core/lock.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/uio.h>
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
constexpr long LOCK_FUTEX_OFFSET = static_cast<long>(offsetof(shared_lock, word)) -
				   static_cast<long>(offsetof(shared_lock, link));

// How long a locker spins before it sleeps, and how long a sleep lasts at most: a sleeper
// wakes at the latest this long after the lock came free, or its holder died, without a
// wake-up (see the header).
constexpr int SPINS = 100;
constexpr long SLEEP_NS = 1000 * 1000;

// A waiter that has seen the same word this long asks whether the thread it names holds
// the lock (judge_holder), and asks again this often while the answer is yes. Holds are
// microseconds long; the first check is what a word naming no holder costs. A holder that
// cannot be judged is waited on this long from the first check.
constexpr uint64_t FIRST_CHECK_NS = 10 * 1000 * 1000;
constexpr uint64_t RECHECK_NS = 100 * 1000 * 1000;
constexpr uint64_t UNDECIDED_NS = 200 * 1000 * 1000;
// A live sharer is taken over only after this many checks in a row, NOT_LISTED_RECHECK_NS
// apart, found the word unchanged and the lock on neither its robust list nor its pending
// entry. A hash audit takes every bucket lock in turn, so each such word must cost little.
constexpr int NOT_LISTED_CHECKS = 3;
constexpr uint64_t NOT_LISTED_RECHECK_NS = 50 * 1000 * 1000;

// No thread id reaches this (the kernel's PID_MAX_LIMIT on 64-bit machines).
constexpr uint32_t PID_MAX_LIMIT = 4 * 1024 * 1024;

// Locks a thread holds that it remembers in its own TLS: the library nests three (an LRU
// CPU's lock, the LRU's global lock, a bucket lock). A hash table audit takes every bucket
// lock (up to 1024): the record moves to the heap, up to the kernel's ROBUST_LIST_LIMIT
// (the kernel walks no further). Locks past that, or taken when the heap cannot grow, are
// not linked: waiters judge their holder by its thread alone (acquire_slow).
constexpr uint32_t INLINE_HELD = 8;
constexpr uint32_t MAX_HELD = ROBUST_LIST_LIMIT;

// A lock this thread holds and linked into its robust list, and the entry that was first
// on the list when it was linked, which is its next link unless the C library unlinked
// that entry since. Private: what the region says about the list is only believed when
// it agrees with this.
struct held_lock {
	shared_lock *lock;
	robust_link *next;
};

struct thread_state {
	uint32_t tid; // 0 until first use, and again in a fork child
	uint32_t tgid;
	robust_head *head; // this thread's robust list; null if we cannot join it
	held_lock *held;   // inline_held, or a heap array once more were held
	held_lock *top;	   // past the last entry of held in use (they are oldest first)
	held_lock *end;	   // past the end of held
	held_lock inline_held[INLINE_HELD];

	uint32_t depth() const { return static_cast<uint32_t>(top - held); }
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

// A fork child is a new thread with the same robust list head but a new tid, and the C
// library empties its robust list: it holds nothing linked.
void forget_thread_state()
{
	self.tid = 0;
	self.top = self.held;
}

[[gnu::constructor]] void register_fork_handler()
{
	pthread_atfork(nullptr, nullptr, forget_thread_state);
}

// At thread exit (a thread that exits holding locks leaves them to the kernel's marks and
// the waiters' checks; the record goes with it).
void release_held(void *a)
{
	if (self.held != a)
		return;
	self.held = self.top = self.inline_held;
	self.end = self.inline_held + INLINE_HELD;
	free(a);
}

// Room for more held locks than the array has: a heap array twice as long, which the
// thread keeps until it exits. False when it cannot grow.
[[gnu::noinline]] bool grow_held()
{
	static pthread_key_t key;
	static int key_err = pthread_key_create(&key, release_held);
	uint32_t n = self.depth();
	if (key_err || n >= MAX_HELD)
		return false;
	auto *a = static_cast<held_lock *>(malloc(2 * n * sizeof(held_lock)));
	if (!a)
		return false;
	memcpy(a, self.held, n * sizeof(held_lock));
	if (self.held != self.inline_held)
		free(self.held);
	pthread_setspecific(key, a);
	self.held = a;
	self.top = a + n;
	self.end = a + 2 * n;
	return true;
}

// Join the robust list the C library registered, if its entries have our layout (they do
// for glibc: the list links sit where a pthread mutex keeps them). Otherwise locks still
// work but a holder's death is noticed only by the waiters' checks (acquire_slow).
[[gnu::noinline]] void init_thread_state()
{
	self.tid = static_cast<uint32_t>(syscall(SYS_gettid));
	self.tgid = static_cast<uint32_t>(getpid());
	if (!self.held) {
		self.held = self.inline_held;
		self.end = self.inline_held + INLINE_HELD;
	}
	self.top = self.held;
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

// ---- the robust list ----------------------------------------------------------------------
//
// The C library marks priority-inheritance entries with bit 0 of the pointers to them.

robust_link *untag(robust_link *l)
{
	return reinterpret_cast<robust_link *>(reinterpret_cast<uintptr_t>(l) & ~uintptr_t{1});
}

// Every list member keeps its prev pointer just before its link.
robust_link **prev_slot(robust_link *l) { return reinterpret_cast<robust_link **>(untag(l)) - 1; }

// The kernel reads the list only once this thread has stopped, so program order is all
// that matters: compiler barriers, no fences.
void barrier() { std::atomic_signal_fence(std::memory_order_seq_cst); }

// Link l first on the list. Everything written through is a pointer from this thread's
// own memory (the list head, the previous first entry); l's links are written, not read.
void link_in(robust_head *h, shared_lock *l, held_lock *top)
{
	robust_link *first = h->list.next;
	l->link.next = first;
	l->prev = &h->list;
	*prev_slot(first) = &l->link;
	barrier();
	h->list.next = &l->link;
	top->next = first;
	top->lock = l;
	self.top = top + 1;
}

int held_index(const thread_state &me, const shared_lock *l)
{
	for (uint32_t i = me.depth(); i-- > 0;)
		if (me.held[i].lock == l)
			return static_cast<int>(i);
	return -1;
}

int held_index_of_link(const thread_state &me, robust_link *link)
{
	for (uint32_t i = me.depth(); i-- > 0;)
		if (&me.held[i].lock->link == untag(link))
			return static_cast<int>(i);
	return -1;
}

// Whether entry, a pointer this thread got from its own list head or a C library entry,
// is a robust mutex this thread holds: still on the list.
bool holds_entry(const thread_state &me, robust_link *entry)
{
	auto *w = reinterpret_cast<volatile uint32_t *>(reinterpret_cast<char *>(untag(entry)) +
							LOCK_FUTEX_OFFSET);
	return (*w & FUTEX_TID_MASK) == me.tid;
}

// The entry after held lock i on the list, without trusting the region: its link if that
// names the list head, another lock this thread holds or what i was linked before (the C
// library moves i's link on when it unlinks that entry); else what i was linked before,
// while that is still on the list. Null if neither can be vouched for.
robust_link *next_of_held(const thread_state &me, robust_head *h, uint32_t i)
{
	robust_link *next = *reinterpret_cast<robust_link *volatile *>(&me.held[i].lock->link.next);
	robust_link *was = me.held[i].next;
	int j = held_index_of_link(me, next);
	if (next == &h->list || next == was || (j >= 0 && static_cast<uint32_t>(j) != i))
		return next;
	if (was == &h->list || held_index_of_link(me, was) >= 0 || holds_entry(me, was))
		return was;
	return nullptr;
}

// The entry before target, found from the head through links that can be vouched for:
// our locks' as next_of_held says, the C library's entries as they are (that memory is
// the program's, not a region's). Null if target cannot be reached that way.
robust_link *find_prev(const thread_state &me, robust_head *h, robust_link *target)
{
	robust_link *prev = &h->list, *cur = h->list.next;
	// The kernel stops after ROBUST_LIST_LIMIT entries; so may we.
	for (uint32_t steps = 0; steps < ROBUST_LIST_LIMIT + MAX_HELD; steps++) {
		if (untag(cur) == target)
			return prev;
		if (untag(cur) == &h->list)
			return nullptr;
		int i = held_index_of_link(me, cur);
		robust_link *next =
			i >= 0 ? next_of_held(me, h, static_cast<uint32_t>(i)) : untag(cur)->next;
		if (!next)
			return nullptr;
		prev = untag(cur);
		cur = next;
	}
	return nullptr;
}

// Make the list the locks this thread still holds and nothing else. For a list that no
// longer agrees with what this thread knows (another process rewrote a link in a region):
// the C library's entries past the damage are dropped, which costs them only the kernel's
// mark if this thread dies holding them.
void relink_held(thread_state &me, robust_head *h)
{
	h->list.next = &h->list;
	barrier();
	uint32_t n = me.depth();
	me.top = me.held;
	for (uint32_t i = 0; i < n; i++) {
		link_in(h, me.held[i].lock, me.top);
		barrier();
	}
}

// Unlock l when it is not first on the list with the next link it was linked with: it is
// unlocked out of order, or around a C library robust mutex, or its links were
// overwritten; or it was never linked (no robust list, no room to remember it, taken
// before a fork).
[[gnu::noinline]] void unlock_slow(thread_state &me, shared_lock *l)
{
	robust_head *h = me.head;
	int at = h ? held_index(me, l) : -1;
	if (at < 0) {
		l->word.store(0, std::memory_order_release);
		return;
	}
	h->list_op_pending = &l->link;
	barrier();
	robust_link *prev = find_prev(me, h, &l->link);
	robust_link *next = prev ? next_of_held(me, h, static_cast<uint32_t>(at)) : nullptr;
	bool ok = prev && next;
	if (ok) {
		*prev_slot(next) = prev;
		prev->next = next;
		if (int p = held_index_of_link(me, prev); p >= 0)
			me.held[p].next = next;
	}
	for (uint32_t i = static_cast<uint32_t>(at); i + 1 < me.depth(); i++)
		me.held[i] = me.held[i + 1];
	me.top--;
	if (!ok)
		relink_held(me, h);
	barrier();
	l->word.store(0, std::memory_order_release);
	barrier();
	h->list_op_pending = nullptr;
}

// ---- who may hold a lock -------------------------------------------------------------------
//
// A lock word names its holder by thread id, numbered as the holder's PID namespace
// numbers threads, and kill(), /proc and the calls below read it as the caller's namespace
// numbers them. This assumes that every sharer of a region is in the caller's PID
// namespace, which bpfmap makes so by refusing, at attach, a sharer from another one (a
// thread id from another namespace could name a live thread here, or none). That /proc is
// this namespace's is checked before it is believed.
//
// A holder is a live thread whose process maps the lock's memory and that has the lock on
// its robust list, or as its pending entry (set before it takes the word, cleared once the
// lock is linked; set again before it unlinks, cleared once the word is 0): every lock
// this library holds is (up to MAX_HELD at once), on a C library whose robust list has
// our layout. So a word is
// taken over when it names the caller itself (locks do not nest on one thread), a number
// above any thread id, a thread that does not exist, one whose process does not map the
// lock's memory (a kernel thread, init, any unrelated process), or one whose robust list
// does not have the lock (a sharer whose tid was scribbled there) on NOT_LISTED_CHECKS
// checks in a row. What cannot be read:
// a process that maps the memory but whose robust list we may not read (process_vm_readv
// needs ptrace rights: another user's, or not our descendant under Yama) or has another
// layout counts as a holder; one whose memory map we may not read either (another user's
// when we are not root; init in a container), or any thread when /proc is another
// namespace's, counts as one for UNDECIDED_NS, then is taken over.

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
	unsigned long start, end, off, ino;
	unsigned maj, min;
	bool shared;
};

bool parse_mapping(const char *line, mapping *m)
{
	char perms[5];
	if (sscanf(line, "%lx-%lx %4s %lx %x:%x %lu", &m->start, &m->end, perms, &m->off, &m->maj,
		   &m->min, &m->ino) != 7)
		return false;
	m->shared = perms[3] == 's';
	return true;
}

bool remote_read(uint32_t tid, const void *from, void *to, size_t len)
{
	iovec local{to, len}, remote{const_cast<void *>(from), len};
	return process_vm_readv(static_cast<pid_t>(tid), &local, 1, &remote, 1, 0) ==
	       static_cast<ssize_t>(len);
}

// Whether thread tid has a lock on its robust list or pending, the lock's link being at
// one of the n addresses at (in tid's address space): 1 yes, 0 no, -1 cannot be read.
int robust_list_has(uint32_t tid, const uintptr_t *at, int n)
{
	robust_head *head = nullptr;
	size_t len = 0;
	robust_head h;
	if (syscall(SYS_get_robust_list, tid, &head, &len) != 0 || !head || len != sizeof(h) ||
	    !remote_read(tid, head, &h, sizeof(h)) || h.futex_offset != LOCK_FUTEX_OFFSET)
		return -1;
	auto is_lock = [&](robust_link *e) {
		auto u = reinterpret_cast<uintptr_t>(untag(e));
		for (int i = 0; i < n; i++)
			if (u == at[i])
				return true;
		return false;
	};
	if (h.list_op_pending && is_lock(h.list_op_pending))
		return 1;
	robust_link *e = h.list.next;
	for (uint32_t steps = 0; steps < ROBUST_LIST_LIMIT; steps++) {
		if (untag(e) == &head->list)
			return 0;
		if (is_lock(e))
			return 1;
		if (!remote_read(tid, untag(e), &e, sizeof(e)))
			return -1;
	}
	return -1;
}

// not_listed: a live sharer without the lock on its robust list. One such answer proves
// little: the word names a thread, not one hold of it, so a thread that let the lock go
// and took it again between our reads (or whose list we read half-written) looks so too.
enum class verdict { gone, holds, undecided, not_listed };

// Whether thread tid (not the caller) holds the lock at addr.
[[gnu::noinline]] verdict judge_holder(const shared_lock *l, uint32_t tid)
{
	if (thread_gone(tid))
		return verdict::gone;
	if (!proc_is_ours())
		return verdict::undecided;
	auto a = reinterpret_cast<unsigned long>(l);
	mapping mine{};
	int r = scan_lines("/proc/self/maps", [&](const char *line) {
		return parse_mapping(line, &mine) && mine.start <= a && a < mine.end;
	});
	if (r != 1)
		return verdict::undecided;
	constexpr int MAX_AT = 8;
	uintptr_t at[MAX_AT];
	int n = 0;
	char path[64];
	if (!mine.shared || mine.ino == 0) {
		// Memory only this process writes: only its threads hold locks there.
		snprintf(path, sizeof(path), "/proc/self/task/%u", tid);
		if (access(path, F_OK) != 0)
			return verdict::gone;
		at[n++] = reinterpret_cast<uintptr_t>(&l->link);
	} else {
		// Where tid's process maps the lock: its mappings of the same object and offset.
		unsigned long file_off = mine.off + (a - mine.start);
		snprintf(path, sizeof(path), "/proc/%u/maps", tid);
		r = scan_lines(path, [&](const char *line) {
			mapping m;
			if (parse_mapping(line, &m) && m.shared && m.ino == mine.ino &&
			    m.maj == mine.maj && m.min == mine.min && m.off <= file_off &&
			    file_off - m.off < m.end - m.start)
				at[n++] =
					m.start + (file_off - m.off) + offsetof(shared_lock, link);
			return n == MAX_AT;
		});
		if (r < 0)
			return thread_gone(tid) ? verdict::gone : verdict::undecided;
		if (n == 0)
			return verdict::gone;
	}
	r = robust_list_has(tid, at, n);
	if (r < 0)
		return thread_gone(tid) ? verdict::gone : verdict::holds;
	return r ? verdict::holds : verdict::not_listed;
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
	uint64_t check_at = 0, give_up_at = 0;
	int spins = 0, not_listed = 0;
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
			give_up_at = 0;
			not_listed = 0;
		} else if (now >= check_at) {
			verdict h = judge_holder(l, holder);
			if (h == verdict::undecided && !give_up_at)
				give_up_at = now + UNDECIDED_NS;
			not_listed = h == verdict::not_listed ? not_listed + 1 : 0;
			if (h == verdict::gone || (h == verdict::undecided && now >= give_up_at) ||
			    not_listed >= NOT_LISTED_CHECKS) {
				if (l->word.compare_exchange_strong(w, tid,
								    std::memory_order_acquire,
								    std::memory_order_relaxed))
					return true;
				continue;
			}
			check_at =
				monotonic_ns() + (h == verdict::undecided    ? FIRST_CHECK_NS
						  : h == verdict::not_listed ? NOT_LISTED_RECHECK_NS
									     : RECHECK_NS);
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
	if (__builtin_expect(self.tid == 0, 0))
		init_thread_state();
	// Linked only while there is room to remember it.
	held_lock *top = self.top;
	robust_head *h = self.head;
	if (__builtin_expect(top == self.end, 0)) {
		if (h && grow_held())
			top = self.top;
		else
			h = nullptr;
	}
	// Pending first: if we die between taking the word and linking, the kernel still
	// finds this lock.
	if (h) {
		h->list_op_pending = &link;
		barrier();
	}
	uint32_t w = 0;
	bool died = false;
	if (!word.compare_exchange_strong(w, self.tid, std::memory_order_acquire,
					  std::memory_order_relaxed))
		died = acquire_slow(this, self.tid);
	if (h) {
		// Taken over from this very thread (the word named it): it is linked already.
		if (__builtin_expect(!died, 1) || held_index(self, this) < 0) {
			barrier();
			link_in(h, this, top);
		}
		barrier();
		h->list_op_pending = nullptr;
	}
	return died;
}

void shared_lock::unlock()
{
	robust_head *h = self.head;
	held_lock *top = self.top - 1;
	// The common case: first on the list (so the last lock this thread linked, the top
	// of held), followed by what followed it when it was linked. Nothing read from the
	// region is written through.
	if (__builtin_expect(h && h->list.next == &link && link.next == top->next, 1)) {
		robust_link *next = top->next;
		h->list_op_pending = &link;
		barrier();
		*prev_slot(next) = &h->list;
		h->list.next = next;
		self.top = top;
		barrier();
		word.store(0, std::memory_order_release);
		barrier();
		h->list_op_pending = nullptr;
	} else {
		unlock_slow(self, this);
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
