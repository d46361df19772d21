// epoll on a ring buffer's fd, as the kernel serves it: libbpf's ring_buffer__new() puts
// the map fd in an epoll set and waits with epoll_wait(); both must work on a bpfmap ring.
//
// A bpfmap map fd is a file, which epoll refuses (EPERM). So epoll_ctl() and the
// epoll_wait() family are interposed: when the kernel refuses the fd of a map with a
// map_poll op (the ring buffers), the wait queue (core/waitq.h) the op names gets a sleeper
// socket that stands in for the map in the epoll set, under a tagged data word;
// epoll_wait() gives back the caller's own data for it and reads away its wakes. The op
// says a ring is readable whenever producer_pos != consumer_pos; a wake arrives only when a
// producer finds the consumer caught up. To be as level-triggered as the kernel,
// epoll_wait() first polls every ring in the set (after a full barrier) and returns at once
// when one is ready; otherwise it sleeps. A producer that commits after that check sees the
// consumer's position (its commit is a full barrier too) and wakes the socket: no wake is
// lost. (Unless the ring's wait queue, which is shared memory, was scribbled on: so a wait
// on a set with rings is cut into waits of at most a second, after each of which the rings
// are checked again.)
//
// Calls that do not involve a ring cost one failed epoll_ctl() at most (only for fds the
// kernel refuses), and epoll_wait() on a set without rings one atomic load.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <new>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

#include "bpfmap/bpfmap.h"
#include "core/map.h"
#include "core/rcu.h"
#include "core/waitq.h"
#include "interpose/interpose.h"
#include "syscall/objtab.h"
#include "syscall/syscall.h"

namespace bpfmap {
namespace {

struct ring_watch {
	int epfd, map_fd;
	bpf_map *map; // a reference
	waitq *queue; // the map's, as its map_poll op names it
	int sock, slot;
	epoll_event user; // the caller's events and data
	uint64_t tag;
};

std::mutex watches_lock;
std::vector<ring_watch> watches;
std::atomic<bool> have_watches{false};
uint64_t next_tag_seq = 0;

const bool watches_lock_atfork = [] {
	pthread_atfork([] { watches_lock.lock(); }, [] { watches_lock.unlock(); },
		       [] { new (&watches_lock) std::mutex; });
	return true;
}();

// Data words that stand for a ring in an epoll set: a random per-process prefix, so a
// program's own data words never pass for one.
uint64_t tag_prefix()
{
	static const uint64_t prefix = [] {
		uint64_t v = 0;
		if (getrandom(&v, sizeof(v), 0) != sizeof(v))
			v = 0x6270666d61700000ull;
		return v & ~0xffffffull;
	}();
	return prefix;
}

bool is_tag(uint64_t data) { return (data & ~0xffffffull) == tag_prefix(); }

long raw_epoll_ctl(int epfd, int op, int fd, epoll_event *ev)
{
	return syscall(SYS_epoll_ctl, epfd, op, fd, ev);
}

// The pollable map behind fd with a reference, or nullptr.
bpf_map *ring_of_fd(int fd)
{
	rcu_guard g;
	int err;
	unsigned denied;
	bpf_map *map = map_from_fd(fd, &err, &denied);
	if (!map || !map->ops->map_poll || !map_get(map))
		return nullptr;
	return map;
}

// Add or change w's socket in its epoll set: readable once woken, under w's tag.
long ctl_stand_in(int op, const ring_watch &w)
{
	epoll_event stand_in{};
	stand_in.events = EPOLLIN;
	stand_in.data.u64 = w.tag;
	return raw_epoll_ctl(w.epfd, op, w.sock, &stand_in);
}

// Take w's stand-in out of its set and w out of the ring's wait queue. The caller puts
// w.map only after letting go of watches_lock: the last put frees the map, which closes
// files of its own, and close() comes back here.
void unwatch(const ring_watch &w)
{
	raw_epoll_ctl(w.epfd, EPOLL_CTL_DEL, w.sock, nullptr);
	waitq_leave(w.queue, w.slot, w.sock);
}

ring_watch *find(int epfd, int map_fd)
{
	for (ring_watch &w : watches)
		if (w.epfd == epfd && w.map_fd == map_fd)
			return &w;
	return nullptr;
}

int watch_add(int epfd, int fd, const epoll_event &ev)
{
	bpf_map *map = ring_of_fd(fd);
	if (!map)
		return -EPERM; // what the kernel said
	std::unique_lock<std::mutex> g(watches_lock);
	int err = 0;
	// Asked for no events, the op only names its queue.
	map_poll_table pt;
	map->ops->map_poll(map, &pt);
	ring_watch w{epfd, fd, map, pt.queue,
		     -1,   -1, ev,  tag_prefix() | (next_tag_seq++ & 0xffffff)};
	if (find(epfd, fd)) {
		err = -EEXIST;
	} else if ((w.sock = waitq_join(w.queue, &w.slot)) < 0) {
		err = w.sock;
	} else if (ctl_stand_in(EPOLL_CTL_ADD, w) != 0) {
		err = -errno;
		waitq_leave(w.queue, w.slot, w.sock);
	} else {
		watches.push_back(w);
		have_watches.store(true, std::memory_order_release);
		return 0;
	}
	g.unlock();
	map_put(map);
	return err;
}

int watch_change(int epfd, int op, int fd, const epoll_event *ev)
{
	std::unique_lock<std::mutex> g(watches_lock);
	ring_watch *w = find(epfd, fd);
	if (!w) {
		g.unlock();
		bpf_map *map = ring_of_fd(fd);
		if (!map)
			return -EPERM; // not a ring: the kernel's answer stands
		map_put(map);
		return -ENOENT;
	}
	if (op == EPOLL_CTL_DEL) {
		bpf_map *map = w->map;
		unwatch(*w);
		watches.erase(watches.begin() + (w - watches.data()));
		g.unlock();
		map_put(map);
		return 0;
	}
	if (ctl_stand_in(EPOLL_CTL_MOD, *w) != 0)
		return -errno;
	w->user = *ev;
	return 0;
}

// The events the ring behind w is ready for, of those its caller waits for (the kernel's
// ep_item_poll()).
uint32_t ring_ready(const ring_watch &w)
{
	map_poll_table pt;
	pt.events = w.user.events;
	return w.map->ops->map_poll(w.map, &pt) & w.user.events;
}

// The rings of epfd that are ready now, as the caller's events; their wakes are read away.
int ready_rings(int epfd, epoll_event *out, int max)
{
	std::atomic_thread_fence(std::memory_order_seq_cst);
	int n = 0;
	for (const ring_watch &w : watches) {
		if (w.epfd != epfd || n == max)
			continue;
		uint32_t ready = ring_ready(w);
		if (!ready)
			continue;
		waitq_drain(w.sock);
		out[n] = w.user;
		out[n].events = ready;
		n++;
	}
	return n;
}

bool set_has_rings(int epfd)
{
	return std::any_of(watches.begin(), watches.end(),
			   [&](const ring_watch &w) { return w.epfd == epfd; });
}

// Events from the kernel: stand-ins become the caller's events (their wakes read away),
// dropping rings already reported in out[0, have).
int translate(epoll_event *out, int have, int got)
{
	int n = have;
	for (int i = have; i < have + got; i++) {
		epoll_event e = out[i];
		if (is_tag(e.data.u64)) {
			auto it = std::find_if(
				watches.begin(), watches.end(),
				[&](const ring_watch &w) { return w.tag == e.data.u64; });
			if (it == watches.end())
				continue;
			waitq_drain(it->sock);
			// A wake is a hint; report only what is true now (a user ring's producer
			// was woken by a drain that may not have emptied it).
			uint32_t ready = ring_ready(*it);
			bool dup = std::any_of(out, out + have, [&](const epoll_event &r) {
				return r.data.u64 == it->user.data.u64 && r.events == ready;
			});
			if (!ready || dup)
				continue;
			e.events = ready;
			e.data = it->user.data;
		}
		out[n++] = e;
	}
	return n;
}

long raw_epoll_pwait(int epfd, epoll_event *ev, int max, int timeout, const sigset_t *mask)
{
	// The seventh argument travels on the stack: a 64-bit one, or its upper half is garbage.
	return syscall(SYS_epoll_pwait, epfd, ev, max, timeout, mask, size_t{_NSIG / 8});
}

// The longest one kernel wait lasts while the set holds rings: a wake can be lost only if
// a ring's wait queue in shared memory was scribbled on, and then the rings are looked at
// again at least this often instead of never.
constexpr int RING_RECHECK_MS = 1000;

using clock_type = std::chrono::steady_clock;

// Milliseconds of the caller's timeout left before deadline; -1 for no timeout.
int ms_left(int timeout, clock_type::time_point deadline)
{
	if (timeout < 0)
		return -1;
	auto left =
		std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now())
			.count();
	return static_cast<int>(std::clamp<int64_t>(left, 0, timeout));
}

int wait_slice(int timeout, clock_type::time_point deadline)
{
	int left = ms_left(timeout, deadline);
	return left < 0 || left > RING_RECHECK_MS ? RING_RECHECK_MS : left;
}

int ring_epoll_wait(int epfd, epoll_event *events, int max, int timeout, const sigset_t *mask)
{
	if (!have_watches.load(std::memory_order_acquire) || max <= 0)
		return static_cast<int>(raw_epoll_pwait(epfd, events, max, timeout, mask));
	auto deadline = clock_type::now() + std::chrono::milliseconds(std::max(timeout, 0));
	for (;;) {
		int have;
		{
			std::lock_guard<std::mutex> g(watches_lock);
			if (!set_has_rings(epfd))
				have = -1;
			else
				have = ready_rings(epfd, events, max);
		}
		if (have < 0)
			return static_cast<int>(raw_epoll_pwait(epfd, events, max,
								ms_left(timeout, deadline), mask));
		int slice = have ? 0 : wait_slice(timeout, deadline);
		long got = raw_epoll_pwait(epfd, events + have, max - have, slice, mask);
		if (got < 0)
			return have ? have : -1;
		int n;
		{
			std::lock_guard<std::mutex> g(watches_lock);
			n = translate(events, have, static_cast<int>(got));
		}
		if (n > 0 || have)
			return n;
		// Nothing to report: only stale wakes, or a slice ran out. Look at the rings
		// again unless the caller's timeout is over.
		if (timeout >= 0 && clock_type::now() >= deadline)
			return 0;
	}
}

} // namespace

// A ring's fd or an epoll fd was closed: forget the watches it carried, as the kernel
// drops a closed file from every epoll set.
void ring_epoll_fds_closed(int first, int last)
{
	if (!have_watches.load(std::memory_order_acquire))
		return;
	std::vector<bpf_map *> dropped;
	{
		std::lock_guard<std::mutex> g(watches_lock);
		for (auto it = watches.begin(); it != watches.end();) {
			bool closed = (it->epfd >= first && it->epfd <= last) ||
				      (it->map_fd >= first && it->map_fd <= last);
			if (closed) {
				unwatch(*it);
				dropped.push_back(it->map);
				it = watches.erase(it);
			} else {
				++it;
			}
		}
	}
	for (bpf_map *map : dropped)
		map_put(map);
}

} // namespace bpfmap

extern "C" {

BPFMAP_INTERPOSE int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	// The kernel refuses a file it cannot poll with EPERM: only then may fd be a ring.
	long ret = bpfmap::raw_epoll_ctl(epfd, op, fd, ev);
	if (ret == 0 || errno != EPERM)
		return static_cast<int>(ret);
	int err = op == EPOLL_CTL_ADD ? (ev ? bpfmap::watch_add(epfd, fd, *ev) : -EFAULT)
				      : bpfmap::watch_change(epfd, op, fd, ev);
	if (err) {
		errno = -err;
		return -1;
	}
	return 0;
}

BPFMAP_INTERPOSE int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout)
{
	return bpfmap::ring_epoll_wait(epfd, events, maxevents, timeout, nullptr);
}

BPFMAP_INTERPOSE int epoll_pwait(int epfd, struct epoll_event *events, int maxevents, int timeout,
				 const sigset_t *sigmask)
{
	return bpfmap::ring_epoll_wait(epfd, events, maxevents, timeout, sigmask);
}

} // extern "C"
