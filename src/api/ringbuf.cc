// The C++ ring buffer producer and consumer (include/bpfmap/ringbuf.hpp).
#include "bpfmap/ringbuf.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <poll.h>
#include <utility>

#include "maps/ringbuf.h"
#include "uapi/bpf_uapi.h"

namespace bpfmap {
namespace {

bpf_map *to_map(bpfmap_map *m) { return reinterpret_cast<bpf_map *>(m); }

constexpr int HEAD_CHECK_MS = 50;


// A handle on the ring buffer behind fd, or the errno why not.
int open_ring(int fd, bpfmap_map **out)
{
	bpfmap_map *m = bpfmap_map_get(fd);
	if (!m)
		return errno;
	bpf_map *map = to_map(m);
	if (map->map_type != uapi::MAP_TYPE_RINGBUF || !is_ringbuf(map) ||
	    !ringbuf_view_of(map).data) {
		bpfmap_map_put(m);
		return EINVAL;
	}
	*out = m;
	return 0;
}

} // namespace

RingProducer::~RingProducer() { bpfmap_map_put(map_); }

RingProducer::RingProducer(RingProducer &&o) noexcept : map_(std::exchange(o.map_, nullptr)) {}

RingProducer &RingProducer::operator=(RingProducer &&o) noexcept
{
	std::swap(map_, o.map_);
	return *this;
}

int RingProducer::open(int map_fd, RingProducer &out)
{
	bpfmap_map *m = nullptr;
	if (int err = open_ring(map_fd, &m))
		return err;
	RingProducer p;
	p.map_ = m;
	out = std::move(p);
	return 0;
}

RingConsumer::~RingConsumer()
{
	if (map_) {
		waitq_leave(ringbuf_view_of(to_map(map_)).waiters, slot_, wake_fd_);
		bpfmap_map_put(map_);
	}
}

RingConsumer::RingConsumer(RingConsumer &&o) noexcept
	: map_(std::exchange(o.map_, nullptr)), wake_fd_(std::exchange(o.wake_fd_, -1)),
	  slot_(std::exchange(o.slot_, -1)), fd_given_(o.fd_given_), callback_(std::move(o.callback_))
{
}

RingConsumer &RingConsumer::operator=(RingConsumer &&o) noexcept
{
	std::swap(map_, o.map_);
	std::swap(wake_fd_, o.wake_fd_);
	std::swap(slot_, o.slot_);
	std::swap(fd_given_, o.fd_given_);
	std::swap(callback_, o.callback_);
	return *this;
}

int RingConsumer::open(int map_fd, Callback callback, RingConsumer &out)
{
	bpfmap_map *m = nullptr;
	if (int err = open_ring(map_fd, &m))
		return err;
	int slot = -1;
	int fd = waitq_join(ringbuf_view_of(to_map(m)).waiters, &slot);
	if (fd < 0) {
		bpfmap_map_put(m);
		return -fd;
	}
	waitq_arm(ringbuf_view_of(to_map(m)).waiters, slot, false); // poll() arms to sleep
	RingConsumer c;
	c.map_ = m;
	c.wake_fd_ = fd;
	c.slot_ = slot;
	c.callback_ = std::move(callback);
	out = std::move(c);
	return 0;
}

int RingConsumer::consume()
{
	ringbuf_view v = ringbuf_view_of(to_map(map_));
	// Wakes queue on the socket only while armed: always once fd() was given out, else
	// only while poll() sleeps (and poll() reads them away itself). Read them before the
	// last look below, so a wake sent after it stays queued.
	if (fd_given_)
		waitq_drain(wake_fd_);
	uint64_t cons = v.consumer_pos->load(std::memory_order_relaxed); // ours alone
	int n = 0;
	for (;;) {
		uint64_t prod = v.producer_pos->load(std::memory_order_acquire);
		while (cons != prod) {
			auto *h = reinterpret_cast<ringbuf_hdr *>(v.data + (cons & v.mask));
			uint32_t len = h->len.load(std::memory_order_acquire);
			if (len & RINGBUF_BUSY_BIT)
				break;
			uint32_t size = len & ~RINGBUF_DISCARD_BIT;
			uint64_t next = cons + round_up(size + RINGBUF_HDR_SZ, 8);
			if (!(len & RINGBUF_DISCARD_BIT)) {
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
		if (h->len.load(std::memory_order_acquire) & RINGBUF_BUSY_BIT)
			return n;
	}
}

int RingConsumer::fd() const
{
	if (map_ && !fd_given_) {
		fd_given_ = true;
		waitq_arm(ringbuf_view_of(to_map(map_)).waiters, slot_, true);
	}
	return wake_fd_;
}

int RingConsumer::poll(int timeout_ms)
{
	bpf_map *map = to_map(map_);
	waitq *wq = ringbuf_view_of(map).waiters;
	auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
	for (;;) {
		int n = consume();
		if (n != 0)
			return n;
		// Data that consume() could not take: the next record is still being written. Its
		// producer may have died; look again at least every HEAD_CHECK_MS.
		bool head_busy = ringbuf_query(map, RB_AVAIL_DATA) != 0;
		if (head_busy && ringbuf_reap_dead_head(map))
			continue;
		int wait = timeout_ms;
		if (timeout_ms >= 0) {
			auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
				deadline - std::chrono::steady_clock::now());
			wait = static_cast<int>(std::max<int64_t>(0, left.count()));
		}
		if (head_busy && (wait < 0 || wait > HEAD_CHECK_MS))
			wait = HEAD_CHECK_MS;
		if (!fd_given_) {
			// Armed before consume()'s last look, so a commit after it wakes us.
			waitq_arm(wq, slot_, true);
			if ((n = consume()) != 0) {
				waitq_arm(wq, slot_, false);
				return n;
			}
		}
		pollfd p{wake_fd_, POLLIN, 0};
		int r = ::poll(&p, 1, wait);
		if (!fd_given_) {
			waitq_arm(wq, slot_, false);
			if (r > 0)
				waitq_drain(wake_fd_);
		}
		if (r < 0)
			return -errno;
		if (r == 0 && timeout_ms >= 0 && std::chrono::steady_clock::now() >= deadline)
			return consume();
	}
}

UserRingProducer::~UserRingProducer()
{
	if (map_) {
		waitq_leave(ringbuf_view_of(to_map(map_)).waiters, slot_, wake_fd_);
		bpfmap_map_put(map_);
	}
}

UserRingProducer::UserRingProducer(UserRingProducer &&o) noexcept
	: map_(std::exchange(o.map_, nullptr)), wake_fd_(std::exchange(o.wake_fd_, -1)),
	  slot_(std::exchange(o.slot_, -1))
{
}

UserRingProducer &UserRingProducer::operator=(UserRingProducer &&o) noexcept
{
	std::swap(map_, o.map_);
	std::swap(wake_fd_, o.wake_fd_);
	std::swap(slot_, o.slot_);
	return *this;
}

int UserRingProducer::open(int map_fd, UserRingProducer &out)
{
	bpfmap_map *m = bpfmap_map_get(map_fd);
	if (!m)
		return errno;
	bpf_map *map = to_map(m);
	if (map->map_type != uapi::MAP_TYPE_USER_RINGBUF || !is_ringbuf(map) || !ringbuf_view_of(map).data) {
		bpfmap_map_put(m);
		return EINVAL;
	}
	int slot = -1;
	int fd = waitq_join(ringbuf_view_of(map).waiters, &slot);
	if (fd < 0) {
		bpfmap_map_put(m);
		return -fd;
	}
	waitq_arm(ringbuf_view_of(map).waiters, slot, false); // armed only to wait for room
	UserRingProducer p;
	p.map_ = m;
	p.wake_fd_ = fd;
	p.slot_ = slot;
	out = std::move(p);
	return 0;
}

void *UserRingProducer::reserve(size_t size, int *err)
{
	int e = 0;
	void *rec = user_ringbuf_reserve(to_map(map_), size, &e);
	e = rec ? 0 : e;
	if (err)
		*err = e;
	return rec;
}

void *UserRingProducer::reserve_blocking(size_t size, int timeout_ms, int *err)
{
	bpf_map *map = to_map(map_);
	waitq *wq = ringbuf_view_of(map).waiters;
	auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
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
		waitq_arm(wq, slot_, true);
		if ((rec = user_ringbuf_reserve(map, size, &e)) || e != ENOSPC) {
			waitq_arm(wq, slot_, false);
			if (err)
				*err = rec ? 0 : e;
			return rec;
		}
		int wait = -1;
		if (timeout_ms >= 0) {
			auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
				deadline - std::chrono::steady_clock::now());
			if (left.count() <= 0) {
				waitq_arm(wq, slot_, false);
				e = ETIMEDOUT;
				break;
			}
			wait = static_cast<int>(left.count());
		}
		pollfd p{wake_fd_, POLLIN, 0};
		int r = ::poll(&p, 1, wait);
		waitq_arm(wq, slot_, false);
		waitq_drain(wake_fd_);
		if (r < 0) {
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
