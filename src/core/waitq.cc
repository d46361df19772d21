#include "core/waitq.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

namespace bpfmap {

namespace {

// "\0bpfmap-wq-<nonce in hex>": a name in the abstract namespace, gone with its socket.
socklen_t sleeper_name(uint64_t nonce, sockaddr_un *addr)
{
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	int n = snprintf(addr->sun_path + 1, sizeof(addr->sun_path) - 1, "bpfmap-wq-%016llx",
			 static_cast<unsigned long long>(nonce));
	return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
}

uint64_t random_nonce()
{
	uint64_t v = 0;
	while (v == 0)
		if (getrandom(&v, sizeof(v), 0) != sizeof(v))
			v = 0;
	return v;
}

// Our own sockets are closed with the raw syscall: close() is interposed to keep the map
// fd cache, which has nothing to do with them.
void close_own(int fd) { syscall(SYS_close, fd); }

// The socket wakes are sent from: one per process, made on first use. The program may
// close it behind our back (closefrom() after fork, say): the close hooks report that
// (waitq_fds_closed) and the next wake makes a new one.
std::atomic<int> sender{-1};

int sender_socket()
{
	int fd = sender.load(std::memory_order_acquire);
	if (fd >= 0)
		return fd;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int expected = -1;
	if (!sender.compare_exchange_strong(expected, fd, std::memory_order_acq_rel)) {
		close_own(fd);
		return expected;
	}
	return fd;
}

// Send one wake to the sleeper in slot i; free the slot if its sleeper is gone. The nonce
// is shared memory and may be anything: it only ever names a socket in our own
// "bpfmap-wq-" namespace, so a scribbled one costs a stray wake or a failed send.
void wake_slot(waitq *q, int i, uint64_t nonce, int sock)
{
	sockaddr_un addr;
	socklen_t len = sleeper_name(nonce, &addr);
	char byte = 0;
	if (sendto(sock, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL, reinterpret_cast<sockaddr *>(&addr),
		   len) < 0 &&
	    (errno == ECONNREFUSED || errno == ENOENT)) {
		// Disarm first: no one else can take the slot while it still holds the nonce.
		waitq_arm(q, i, false);
		q->slot[i].nonce.compare_exchange_strong(nonce, 0, std::memory_order_relaxed);
	}
	// EAGAIN: the sleeper's queue is full of wakes it has not read; one more adds nothing.
}

// Free every slot whose sleeper is gone, armed or not (a wake is sent to each, which the
// live ones take as a spurious one). For a join that found no free slot.
void reclaim_dead(waitq *q)
{
	int sock = sender_socket();
	if (sock < 0)
		return;
	for (int i = 0; i < WAITQ_SLOTS; i++)
		if (uint64_t nonce = q->slot[i].nonce.load(std::memory_order_acquire))
			wake_slot(q, i, nonce, sock);
}

} // namespace

int waitq_join(waitq *q, int *slot)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	uint64_t nonce = random_nonce();
	sockaddr_un addr;
	socklen_t len = sleeper_name(nonce, &addr);
	if (bind(fd, reinterpret_cast<sockaddr *>(&addr), len) != 0) {
		int err = -errno;
		close_own(fd);
		return err;
	}
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < WAITQ_SLOTS; i++) {
			uint64_t free_slot = 0;
			if (q->slot[i].nonce.compare_exchange_strong(free_slot, nonce,
								     std::memory_order_seq_cst)) {
				waitq_arm(q, i, true);
				*slot = i;
				return fd;
			}
		}
		reclaim_dead(q);
	}
	close_own(fd);
	return -EBUSY;
}

void waitq_leave(waitq *q, int slot, int fd)
{
	if (slot >= 0 && slot < WAITQ_SLOTS) {
		waitq_arm(q, slot, false);
		q->slot[slot].nonce.store(0, std::memory_order_release);
	}
	close_own(fd);
}

void waitq_wake(waitq *q)
{
	int sock = -1;
	for (int i = 0; i < WAITQ_SLOTS; i++) {
		uint64_t nonce = q->slot[i].nonce.load(std::memory_order_acquire);
		if (!nonce || !q->slot[i].armed.load(std::memory_order_relaxed))
			continue;
		if (sock < 0 && (sock = sender_socket()) < 0)
			return;
		wake_slot(q, i, nonce, sock);
	}
}

void waitq_fds_closed(int first, int last)
{
	int fd = sender.load(std::memory_order_relaxed);
	if (fd >= first && fd <= last)
		sender.compare_exchange_strong(fd, -1, std::memory_order_relaxed);
}

void waitq_drain(int fd)
{
	char buf[64];
	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0) {
	}
}

void waitq_arm(waitq *q, int slot, bool armed)
{
	if (q->slot[slot].armed.exchange(armed, std::memory_order_relaxed) != armed)
		q->n_armed.fetch_add(armed ? 1 : -1, std::memory_order_relaxed);
	if (armed)
		std::atomic_thread_fence(std::memory_order_seq_cst);
}

} // namespace bpfmap
