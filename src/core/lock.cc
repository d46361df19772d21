#include "core/lock.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
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
// work but a holder's death is not noticed.
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

long futex(std::atomic<uint32_t> *word, int op, uint32_t val, const timespec *timeout)
{
	// Not FUTEX_PRIVATE: the word is shared between processes.
	return syscall(SYS_futex, reinterpret_cast<uint32_t *>(word), op, val, timeout, nullptr, 0);
}

// Take the word from free (0) or dead-owner (FUTEX_OWNER_DIED) to tid. Returns whether the
// previous owner died.
bool acquire_slow(shared_lock *l, uint32_t tid)
{
	for (int spins = 0;; spins++) {
		uint32_t w = l->word.load(std::memory_order_relaxed);
		if ((w & FUTEX_TID_MASK) == 0) {
			if (l->word.compare_exchange_weak(w, tid, std::memory_order_acquire,
							  std::memory_order_relaxed))
				return w & FUTEX_OWNER_DIED;
			continue;
		}
		if (spins < SPINS) {
			cpu_relax();
			continue;
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
