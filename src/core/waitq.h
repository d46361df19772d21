// A wait queue in shared memory: sleepers in any process, woken by any process.
//
// A sleeper owns a datagram socket bound to a random name in the abstract namespace and
// publishes that name (a 64-bit nonce) in one of the queue's slots. A waker sends one byte
// to every published name. The sleeper's socket is an fd, so poll(), select() and epoll
// wait on it next to the program's own fds, which a futex cannot give. A sleeper that dies
// takes its socket with it: the next wake gets ECONNREFUSED and frees the slot.
//
// A wake reaches only sleepers already published: a sleeper must publish, then check the
// condition it waits for, then sleep; a waker must change the condition, then wake (both
// with a full barrier between), so one of them always sees the other.
#pragma once

#include <atomic>
#include <cstdint>

namespace bpfmap {

inline constexpr int WAITQ_SLOTS = 16;

struct waitq {
	std::atomic<uint64_t> slot[WAITQ_SLOTS]; // nonce of a sleeper's socket name; 0 free
};

// Join q: returns a nonblocking, close-on-exec socket that becomes readable when q is
// woken, and the slot it took in *slot; -errno on failure (-EBUSY: every slot is held by a
// live sleeper).
int waitq_join(waitq *q, int *slot);

// Leave q: free the slot and close the socket.
void waitq_leave(waitq *q, int slot, int fd);

// Wake every sleeper of q. Costs nothing when no one sleeps.
void waitq_wake(waitq *q);

// Read away the wakes queued on a sleeper's socket.
void waitq_drain(int fd);

} // namespace bpfmap
