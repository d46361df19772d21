#include "core/rcu.h"

#include <linux/membarrier.h>
#include <mutex>
#include <new>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

namespace bpfmap {

namespace {

std::mutex registry_lock;
rcu_reader *readers = nullptr;

bool register_membarrier()
{
	long cmds = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
	if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED))
		return false;
	return syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

// Readers leave their record in the list when their thread exits (nesting is 0 then),
// so the list only grows with the number of threads that ever used bpfmap.
struct reader_slot {
	rcu_reader *r = nullptr;
	~reader_slot()
	{
		if (r)
			r->registered.store(false, std::memory_order_release);
		rcu_self = nullptr;
	}
};
thread_local reader_slot slot;

struct deferred_call {
	void (*fn)(void *);
	void *arg;
};
thread_local std::vector<deferred_call> deferred;

// A child of fork has only the forking thread: the other threads' records must not be
// waited for.
void forget_other_threads()
{
	for (rcu_reader *r = readers; r; r = r->next) {
		if (r == rcu_self)
			continue;
		r->seq.store(0, std::memory_order_relaxed);
		r->registered.store(false, std::memory_order_relaxed);
	}
}

bool init_rcu()
{
	pthread_atfork(
		[] { registry_lock.lock(); }, [] { registry_lock.unlock(); },
		[] {
			new (&registry_lock) std::mutex;
			forget_other_threads();
			if (!rcu_readers_need_fence)
				register_membarrier(); // the registration is per address space
		});
	return !register_membarrier();
}

} // namespace

bool rcu_readers_need_fence = init_rcu();

rcu_reader *rcu_register_thread()
{
	std::lock_guard<std::mutex> g(registry_lock);
	// Reuse a record whose thread has exited.
	rcu_reader *r = readers;
	while (r && r->registered.load(std::memory_order_acquire))
		r = r->next;
	if (!r) {
		r = new rcu_reader;
		r->next = readers;
		readers = r;
	}
	r->nesting = 0;
	r->seq.store(0, std::memory_order_relaxed);
	r->registered.store(true, std::memory_order_release);
	slot.r = r;
	rcu_self = r;
	return r;
}

void rcu_defer(void (*fn)(void *), void *arg)
{
	rcu_reader *r = rcu_self;
	if (!r || r->nesting == 0) {
		fn(arg);
		return;
	}
	deferred.push_back({fn, arg});
	r->deferred_pending = true;
}

void rcu_run_deferred(rcu_reader *r)
{
	r->deferred_pending = false;
	std::vector<deferred_call> calls;
	calls.swap(deferred);
	for (const deferred_call &c : calls)
		c.fn(c.arg);
}

void synchronize_rcu()
{
	if (rcu_readers_need_fence)
		std::atomic_thread_fence(std::memory_order_seq_cst);
	else
		syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);

	std::lock_guard<std::mutex> g(registry_lock);
	for (rcu_reader *r = readers; r; r = r->next) {
		if (r == rcu_self)
			continue; // our own section (if any) does not hold what we free
		uint64_t s = r->seq.load(std::memory_order_acquire);
		if (!(s & 1))
			continue;
		while (r->seq.load(std::memory_order_acquire) == s)
			sched_yield();
	}
}

} // namespace bpfmap
