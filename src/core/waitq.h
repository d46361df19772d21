// A wait queue in shared memory: sleepers in any process, woken by any process.
//
// A sleeper owns a datagram socket bound to a random name in the abstract namespace and
// publishes that name (a 64-bit nonce) in one of the queue's slots. A waker sends one byte
// to every published name. The sleeper's socket is an fd, so poll(), select() and epoll
// wait on it next to the program's own fds, which a futex cannot give. A sleeper that dies
// takes its socket with it: the next wake gets ECONNREFUSED and frees the slot.
//
// A wake reaches only sleepers already published and armed: a sleeper must arm, then check
// the condition it waits for, then sleep; a waker must change the condition, then wake
// (both with a full barrier between), so one of them always sees the other. A sleeper is
// armed from join on; one that knows when it sleeps disarms while awake, which spares its
// wakers the system calls of a wake nobody waits for.
//
// The queue is shared memory and may hold anything. Every walk is over the WAITQ_SLOTS
// slots; a slot index a sleeper keeps is its own (private); a nonce only ever names a
// socket in bpfmap's own abstract namespace. So a scribbled queue can cost a stray wake, a
// lost one (sleepers therefore also look again on a timeout: see api/ringbuf.cc and
// interpose/ring_epoll.cc) or a failed join (EBUSY), never a crash or an endless loop.
#pragma once

#include <atomic>
#include <cstdint>

namespace bpfmap {

inline constexpr int WAITQ_SLOTS = 16;

struct waitq_slot {
	std::atomic<uint64_t> nonce; // names the sleeper's socket; 0: free
	std::atomic<uint32_t> armed; // wakes are sent only while armed
	uint32_t pad;
};

struct waitq {
	waitq_slot slot[WAITQ_SLOTS];
	std::atomic<uint32_t> n_armed; // armed slots (more after a sleeper died armed)
};

// Whether any sleeper is armed: a waker may skip the wake, and the work to decide on it,
// when none is. Call it after the change the sleepers wait for (with a full barrier).
inline bool waitq_active(const waitq *q) { return q->n_armed.load(std::memory_order_seq_cst) != 0; }

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

// fds first..last were closed by the program: forget the wake sender if it was one.
void waitq_fds_closed(int first, int last);

// Arm (before the last check of the condition; a full barrier follows) or disarm.
void waitq_arm(waitq *q, int slot, bool armed);

} // namespace bpfmap
