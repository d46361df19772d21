// Process-shared locks that live in a map's region.
//
// A writer that dies while holding one must not wedge the others, so the lock takes part in
// the kernel's robust-futex protocol: the lock word holds the holder's thread id, and while
// held the lock is linked into the holder's robust list (the one the C library registered
// with set_robust_list). When a thread exits, the kernel walks that list and marks each lock
// still held by it FUTEX_OWNER_DIED; the next locker takes it over and is told so, so it can
// reclaim what the dead writer held (see maps/hashtab_audit.cc, lru_list.cc). Every
// structure guarded by one is written so that it is consistent at each instruction (publish
// with one store).
//
// The region is untrusted (any sharer may write any word of it at any time), so:
// - A lock word that names no thread that holds the lock is taken over, as if its holder
//   had died: a word naming the caller itself, a number no thread can have, a thread that
//   is gone, one whose process does not map the lock's memory, or one that does not have
//   the lock on its robust list (lock.cc says how that is decided, what it does when it
//   cannot be, and what it assumes about PID namespaces). A waiter checks the word it has
//   waited on this way after a few milliseconds, and again now and then, so a holder that
//   is gone is always recovered, also when the kernel did not mark its word. A live holder
//   whose memory map and robust list this process may read is waited on for as long as
//   it holds the lock; one it may not read (another user's process, without ptrace
//   rights) cannot be told from a scribbled word and is taken over after 200 ms, which
//   gives two holders at once only if such a holder really keeps the lock that long.
// - The robust list links of a held lock sit in the region too (the kernel finds the word
//   next to them), where another process can overwrite them. The list is only ever changed
//   through pointers this thread keeps in private memory (a stack of the locks it holds
//   and the list entry each was linked before); a link read from the region is followed
//   or written through only when it matches one of them.
//
// Why not a robust pthread mutex: its unlock is an atomic exchange, ours a plain release
// store, which halves the cost of an uncontended lock/unlock pair (the LRU update takes
// three). The price is that an unlocker cannot see a waiter that went to sleep in the same
// instant; a sleeper therefore also wakes on a short timeout (see lock.cc).
#pragma once

#include <atomic>
#include <cstdint>

namespace bpfmap {

// The kernel's struct robust_list: one link of a thread's robust list.
struct robust_link {
	robust_link *next;
};

struct alignas(64) shared_lock {
	// 0 when free, else the holder's tid; FUTEX_OWNER_DIED once the kernel saw it die.
	std::atomic<uint32_t> word;
	std::atomic<uint32_t> sleepers; // threads waiting in futex_wait on word
	uint32_t reserved[4];
	// The holder's robust list links. The kernel finds word at link + futex_offset, the C
	// library's list neighbours update prev: the layout of a pthread mutex's lock word and
	// list links, which is what the registered futex_offset describes.
	robust_link *prev;
	robust_link link;

	// Called once, on a region nobody else can see yet.
	void init();
	// True when the previous holder died holding the lock, or the word named no thread
	// that could unlock it (taken over: the caller repairs what the lock guards).
	bool lock();
	void unlock();
};
static_assert(sizeof(shared_lock) == 64);

// The calling thread, as the kernel names it (cached; right in a fork child too).
struct thread_id {
	uint32_t tgid, tid;
};
thread_id current_thread();
// Whether that thread still runs (a thread id that was reused reads as alive).
bool thread_alive(thread_id t);

class lock_guard {
public:
	explicit lock_guard(shared_lock &l)
		: l_(l)
		, owner_died_(l_.lock())
	{
	}
	~lock_guard() { l_.unlock(); }
	bool owner_died() const { return owner_died_; }
	lock_guard(const lock_guard &) = delete;
	lock_guard &operator=(const lock_guard &) = delete;

private:
	shared_lock &l_;
	bool owner_died_;
};

} // namespace bpfmap
