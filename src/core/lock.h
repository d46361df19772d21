// Process-shared locks that live in a map's region.
//
// A writer that dies while holding one must not wedge the others: the lock is a robust,
// process-shared pthread mutex, so the kernel marks it owner-dead when its holder exits and
// the next locker takes it over. Every structure guarded by one is written so that it is
// consistent at each instruction (publish with one store); lock() tells the new owner that
// its predecessor died, so it can reclaim what the dead writer held (see hashtab.cc).
#pragma once

#include <pthread.h>

namespace bpfmap {

struct alignas(64) shared_lock {
	pthread_mutex_t mutex;

	// Called once, on a region nobody else can see yet.
	void init();
	// True when the previous holder died holding the lock.
	bool lock();
	void unlock() { pthread_mutex_unlock(&mutex); }
};

class lock_guard {
public:
	explicit lock_guard(shared_lock &l) : l_(l), owner_died_(l_.lock()) {}
	~lock_guard() { l_.unlock(); }
	bool owner_died() const { return owner_died_; }
	lock_guard(const lock_guard &) = delete;
	lock_guard &operator=(const lock_guard &) = delete;

private:
	shared_lock &l_;
	bool owner_died_;
};

} // namespace bpfmap
