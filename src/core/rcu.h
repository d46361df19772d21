// Process-local read-side critical sections, so that a map handle can be freed after its
// last fd is closed while other threads may still be inside a command that found it.
//
// Contract: a reader brackets each use of a handle it found in the fd table with
// rcu_read_lock()/rcu_read_unlock() (nesting allowed, cost: two thread-local stores).
// synchronize_rcu() returns once every reader that was inside a section when it was called
// has left it. It issues membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) so readers need no
// fence; where the kernel lacks it, readers fall back to a full fence.
#pragma once

#include <atomic>
#include <cstdint>

namespace bpfmap {

// seq is odd while the thread is inside a section; a writer that saw it odd waits until
// it moves, so a reader that keeps re-entering cannot starve the writer.
struct rcu_reader {
	std::atomic<uint64_t> seq{0};
	uint64_t nesting = 0;	       // touched by the owning thread only
	bool deferred_pending = false; // rcu_defer() work waits for the end of the section
	rcu_reader *next = nullptr;
	std::atomic<bool> registered{false};
};

rcu_reader *rcu_register_thread();
extern bool rcu_readers_need_fence;

inline thread_local rcu_reader *rcu_self [[gnu::tls_model("initial-exec")]] = nullptr;

inline void rcu_read_lock()
{
	rcu_reader *r = rcu_self;
	if (__builtin_expect(r == nullptr, 0))
		r = rcu_register_thread();
	if (r->nesting++ == 0) {
		r->seq.store(r->seq.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
		if (__builtin_expect(rcu_readers_need_fence, 0))
			std::atomic_thread_fence(std::memory_order_seq_cst);
		else
			std::atomic_signal_fence(std::memory_order_seq_cst);
	}
}

void rcu_run_deferred(rcu_reader *r);

inline void rcu_read_unlock()
{
	rcu_reader *r = rcu_self;
	if (--r->nesting == 0) {
		r->seq.store(r->seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
		if (__builtin_expect(r->deferred_pending, 0))
			rcu_run_deferred(r);
	}
}

// Run fn(arg) once this thread has left its read-side section (at once if it is in none).
// For dropping a reference from inside a section: the last drop frees after
// synchronize_rcu(), which does not wait for the calling thread's own section.
void rcu_defer(void (*fn)(void *), void *arg);

void synchronize_rcu();

class rcu_guard {
public:
	rcu_guard() { rcu_read_lock(); }
	~rcu_guard() { rcu_read_unlock(); }
	rcu_guard(const rcu_guard &) = delete;
	rcu_guard &operator=(const rcu_guard &) = delete;
};

} // namespace bpfmap
