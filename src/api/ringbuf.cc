// The C++ ring buffer producer and consumer (include/bpfmap/ringbuf.hpp).
#include "bpfmap/ringbuf.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <poll.h>
#include <utility>

#include "maps/ringbuf.h"

namespace bpfmap {
namespace {

bpf_map *to_map(bpfmap_map *m) { return reinterpret_cast<bpf_map *>(m); }

constexpr int HEAD_CHECK_MS = 50;
// The longest a sleeper waits before it looks at the ring again even unwoken: a wake is
// lost only if the region's wait queue was scribbled on, and then this bounds the delay.
constexpr int IDLE_CHECK_MS = 1000;
// One consume() takes at most this many rings' worth of records.
constexpr uint64_t CONSUME_MAX_RINGS = 2;

// Open the ring behind fd, which is_type (is_ringbuf or is_user_ringbuf) must accept; with
// `wait`, also take a place in its wait queue, disarmed (its user arms it to sleep). 0 or
// the errno why not.
int ring_open(int fd, bool (*is_type)(const bpf_map *), bool wait, detail::ring_handle *out)
{
	detail::ring_handle h;
	h.map = bpfmap_map_get(fd);
	if (!h.map)
		return errno;
	bpf_map *map = to_map(h.map);
	if (!is_type(map))
		return EINVAL;
	if (wait) {
		waitq *wq = ringbuf_view_of(map).waiters;
		int slot;
		int wake_fd = waitq_join(wq, &slot);
		if (wake_fd < 0)
			return -wake_fd;
		h.wake_fd = wake_fd;
		h.slot = slot;
		waitq_arm(wq, slot, false);
	}
	*out = std::move(h);
	return 0;
}

waitq *waiters_of(const detail::ring_handle &h) { return ringbuf_view_of(to_map(h.map)).waiters; }

using deadline_t = std::chrono::steady_clock::time_point;

deadline_t deadline_after(int timeout_ms)
{
	return std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
}

// Milliseconds left before deadline (never negative), or -1 when timeout_ms is -1: no limit.
int ms_left(deadline_t deadline, int timeout_ms)
{
	if (timeout_ms < 0)
		return -1;
	auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
		deadline - std::chrono::steady_clock::now());
	return static_cast<int>(std::max<int64_t>(0, left.count()));
}

// Sleep on h's socket for up to wait_ms; a handle armed only for this sleep is disarmed and
// its wakes read away. poll()'s result.
int sleep_on(const detail::ring_handle &h, int wait_ms, bool armed_for_sleep)
{
	pollfd p{h.wake_fd, POLLIN, 0};
	int r = ::poll(&p, 1, wait_ms);
	if (armed_for_sleep) {
		int e = errno;
		waitq_arm(waiters_of(h), h.slot, false);
		if (r > 0)
			waitq_drain(h.wake_fd);
		errno = e;
	}
	return r;
}

} // namespace

detail::ring_handle::~ring_handle()
{
	if (!map)
		return;
	if (wake_fd >= 0)
		waitq_leave(ringbuf_view_of(to_map(map)).waiters, slot, wake_fd);
	bpfmap_map_put(map);
}

detail::ring_handle::ring_handle(ring_handle &&o) noexcept
	: map(std::exchange(o.map, nullptr))
	, wake_fd(std::exchange(o.wake_fd, -1))
	, slot(std::exchange(o.slot, -1))
{
}

// The old ring goes with `o`.
detail::ring_handle &detail::ring_handle::operator=(ring_handle &&o) noexcept
{
	std::swap(map, o.map);
	std::swap(wake_fd, o.wake_fd);
	std::swap(slot, o.slot);
	return *this;
}

int RingProducer::open(int map_fd, RingProducer &out)
{
	RingProducer p;
	if (int err = ring_open(map_fd, is_ringbuf, false, &p.h_))
		return err;
	out = std::move(p);
	return 0;
}

int RingConsumer::open(int map_fd, Callback callback, RingConsumer &out)
{
	RingConsumer c;
	if (int err = ring_open(map_fd, is_ringbuf, true, &c.h_))
		return err;
	c.callback_ = std::move(callback);
	out = std::move(c);
	return 0;
}

int RingConsumer::consume()
{
	ringbuf_view v = ringbuf_view_of(to_map(h_.map));
	const uint64_t ring_size = v.mask + 1;
	// Wakes queue on the socket only while armed: always once fd() was given out, else
	// only while poll() sleeps (and poll() reads them away itself). Read them before the
	// last look below, so a wake sent after it stays queued.
	if (fd_given_)
		waitq_drain(h_.wake_fd);
	uint64_t cons = v.consumer_pos->load(std::memory_order_relaxed); // ours alone
	const uint64_t start = cons;
	int n = 0;
	unsigned idle_passes = 0;
	for (;;) {
		const uint64_t pass_start = cons;
		// The positions and lengths are the region's, not ours: the producer position
		// is at most a ring ahead, and a record ends at or before it.
		uint64_t prod = v.producer_pos->load(std::memory_order_acquire);
		if (__builtin_expect(prod - cons > ring_size || (cons | prod) % 8, 0))
			return -EFAULT;
		while (cons != prod) {
			auto *h = reinterpret_cast<ringbuf_hdr *>(v.data + (cons & v.mask));
			uint32_t len = h->len.load(std::memory_order_acquire);
			if (len & BPF_RINGBUF_BUSY_BIT)
				break;
			uint32_t size = len & ~BPF_RINGBUF_DISCARD_BIT;
			uint64_t next = cons + ringbuf_record_len(size);
			if (__builtin_expect(next - cons > prod - cons, 0)) {
				v.consumer_pos->store(cons, std::memory_order_release);
				return -EFAULT;
			}
			if (!(len & BPF_RINGBUF_DISCARD_BIT)) {
				int r = callback_(h + 1, size);
				if (r < 0) {
					v.consumer_pos->store(next, std::memory_order_release);
					return r;
				}
				n++;
			}
			cons = next;
		}
		// Once per batch, not per record: the producers read this line.
		v.consumer_pos->store(cons, std::memory_order_release);
		// The full barrier after our last store, then one more look (see the header).
		std::atomic_thread_fence(std::memory_order_seq_cst);
		if (cons == v.producer_pos->load(std::memory_order_acquire))
			return n;
		auto *h = reinterpret_cast<ringbuf_hdr *>(v.data + (cons & v.mask));
		if (h->len.load(std::memory_order_acquire) & BPF_RINGBUF_BUSY_BIT)
			return n;
		// Producers that keep up with us (or a region scribbled on) must not keep us
		// here for ever: the rest is for the next call.
		if (cons - start >= CONSUME_MAX_RINGS * ring_size)
			return n;
		// Nor a busy bit that a sharer keeps flipping under us.
		if (cons == pass_start && ++idle_passes >= 64)
			return n;
	}
}

int RingConsumer::fd() const
{
	if (h_.map && !fd_given_) {
		fd_given_ = true;
		waitq_arm(waiters_of(h_), h_.slot, true);
	}
	return h_.wake_fd;
}

int RingConsumer::poll(int timeout_ms)
{
	bpf_map *map = to_map(h_.map);
	waitq *wq = waiters_of(h_);
	deadline_t deadline = deadline_after(timeout_ms);
	for (;;) {
		int n = consume();
		if (n != 0)
			return n;
		// Data that consume() could not take: the next record is still being written. Its
		// producer may have died; look again at least every HEAD_CHECK_MS.
		bool head_busy = ringbuf_query(map, RB_AVAIL_DATA) != 0;
		if (head_busy && ringbuf_reap_dead_head(map))
			continue;
		int wait = ms_left(deadline, timeout_ms);
		int check_ms = head_busy ? HEAD_CHECK_MS : IDLE_CHECK_MS;
		if (wait < 0 || wait > check_ms)
			wait = check_ms;
		if (!fd_given_) {
			// Armed before consume()'s last look, so a commit after it wakes us.
			waitq_arm(wq, h_.slot, true);
			if ((n = consume()) != 0) {
				waitq_arm(wq, h_.slot, false);
				return n;
			}
		}
		int r = sleep_on(h_, wait, !fd_given_);
		if (r < 0)
			return -errno;
		// Past the deadline whether the sleep timed out or was woken for nothing (wakes
		// that bring no record, however many, never stretch the wait).
		if (timeout_ms >= 0 && std::chrono::steady_clock::now() >= deadline)
			return consume();
	}
}

int UserRingProducer::open(int map_fd, UserRingProducer &out)
{
	UserRingProducer p;
	if (int err = ring_open(map_fd, is_user_ringbuf, true, &p.h_))
		return err;
	out = std::move(p);
	return 0;
}

void *UserRingProducer::reserve(size_t size, int *err)
{
	int e = 0;
	void *rec = user_ringbuf_reserve(to_map(h_.map), size, &e);
	e = rec ? 0 : e;
	if (err)
		*err = e;
	return rec;
}

void *UserRingProducer::reserve_blocking(size_t size, int timeout_ms, int *err)
{
	bpf_map *map = to_map(h_.map);
	waitq *wq = waiters_of(h_);
	deadline_t deadline = deadline_after(timeout_ms);
	int e = 0;
	for (;;) {
		void *rec = user_ringbuf_reserve(map, size, &e);
		if (rec) {
			if (err)
				*err = 0;
			return rec;
		}
		if (e != ENOSPC)
			break;
		// Armed, then one more try: a drain after it wakes us.
		waitq_arm(wq, h_.slot, true);
		if ((rec = user_ringbuf_reserve(map, size, &e)) || e != ENOSPC) {
			waitq_arm(wq, h_.slot, false);
			if (err)
				*err = rec ? 0 : e;
			return rec;
		}
		int wait = ms_left(deadline, timeout_ms);
		if (wait == 0) {
			waitq_arm(wq, h_.slot, false);
			e = ETIMEDOUT;
			break;
		}
		if (wait < 0 || wait > IDLE_CHECK_MS)
			wait = IDLE_CHECK_MS;
		if (sleep_on(h_, wait, true) < 0) {
			e = errno;
			break;
		}
	}
	if (err)
		*err = e;
	return nullptr;
}

void UserRingProducer::submit(void *record) { user_ringbuf_commit(record, false); }

void UserRingProducer::discard(void *record) { user_ringbuf_commit(record, true); }

} // namespace bpfmap
