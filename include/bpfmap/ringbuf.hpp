// Ring buffers (BPF_MAP_TYPE_RINGBUF) from C++: a producer with the program-side calls,
// and a consumer that runs a callback per record and sleeps on a file descriptor.
//
// Both wrap a ring's map fd (create one with Map::create, type MAP_RINGBUF, key and value
// size 0, max_entries the data size: a power of two, a multiple of 4096). The producer and
// the consumer may live in different processes; so may many producers.
//
// Waking, without busy polling and without a lost wakeup. A producer's commit is a full
// barrier (an exchange on the record's header); after it the producer reads whether any
// consumer is armed, and if one is, reads consumer_pos and wakes the armed consumers when
// it equals its record's position (they have read everything before it), or when forced.
// A consumer is armed from the first call of fd() on, and otherwise only while poll()
// sleeps: it arms (a full barrier follows), then takes its last look at the ring, then
// sleeps. consume() also ends with a full barrier after its last consumer_pos store and one
// more look at the ring, and reads away pending wakes before that look. Each side thus
// writes, fences, then reads what the other wrote: either the consumer's last look sees the
// committed record, or the producer sees the consumer armed and caught up and wakes it, and
// the wake stays queued on the socket behind fd() until the consumer reads it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "bpfmap/bpfmap.h"

namespace bpfmap {

enum ringbuf_flags : uint64_t {
	RB_NO_WAKEUP = 1,
	RB_FORCE_WAKEUP = 2,
};
enum ringbuf_query : uint64_t {
	RB_AVAIL_DATA = 0,
	RB_RING_SIZE = 1,
	RB_CONS_POS = 2,
	RB_PROD_POS = 3,
};

namespace detail {
// A ring and, for those that sleep on it, a place in its wait queue; both are given back
// when the handle goes. Move-only.
struct BPFMAP_API ring_handle {
	bpfmap_map *map = nullptr;
	int wake_fd = -1;
	int slot = -1;

	ring_handle() = default;
	~ring_handle();
	ring_handle(ring_handle &&other) noexcept;
	ring_handle &operator=(ring_handle &&other) noexcept;
};
} // namespace detail

class BPFMAP_API RingProducer {
public:
	RingProducer() = default;

	// 0, or EBADF / EINVAL (not a BPF_MAP_TYPE_RINGBUF).
	static int open(int map_fd, RingProducer &out);

	// size bytes of a new record, or nullptr when the ring has no room (or is corrupt).
	// Submit or discard it exactly once, from any thread of this process (also after the
	// reserving thread exited); the record is never taken away while this process lives.
	void *reserve(size_t size) { return bpfmap_ringbuf_reserve(h_.map, size, 0); }
	void submit(void *record, uint64_t flags = 0) { bpfmap_ringbuf_submit(record, flags); }
	void discard(void *record, uint64_t flags = 0) { bpfmap_ringbuf_discard(record, flags); }
	// Copy size bytes in as one record: 0, EAGAIN (no room) or EINVAL (bad flags).
	int output(const void *data, size_t size, uint64_t flags = 0)
	{
		return static_cast<int>(-bpfmap_ringbuf_output(h_.map, data, size, flags));
	}
	uint64_t query(uint64_t what) const { return bpfmap_ringbuf_query(h_.map, what); }

private:
	detail::ring_handle h_;
};

class BPFMAP_API RingConsumer {
public:
	// Called for each record in order, with its data. A negative return stops consume()
	// before the next record and is returned from it.
	using Callback = std::function<int(const void *data, size_t size)>;

	RingConsumer() = default;

	// 0, or EBADF / EINVAL (not a BPF_MAP_TYPE_RINGBUF) / EBUSY (16 consumers wait on
	// this ring already) / the errno of creating the wake socket.
	static int open(int map_fd, Callback callback, RingConsumer &out);

	// Run the callback for every committed record, in reservation order, skipping
	// discarded ones (at most two rings' worth per call: producers that keep pace do not
	// keep it for ever); returns how many it ran, the callback's negative return, or
	// -EFAULT when the ring's shared pages are corrupt (a position or a record length
	// that no producer wrote: the callback never sees bytes outside the ring).
	int consume();
	// consume(), and if there was nothing, sleep until a producer wakes this consumer or
	// timeout_ms passes (-1: no limit), then consume(). Returns what consume() returned
	// (0 on timeout), or -errno of the wait (-EINTR). It looks at the ring at least once
	// a second even unwoken.
	int poll(int timeout_ms);
	// Readable when a producer has woken this consumer: put it in an epoll set of your
	// own, and call consume() when it fires. From the first call on, producers wake this
	// consumer whenever it has caught up; before it, only while poll() sleeps.
	int fd() const;

private:
	detail::ring_handle h_;
	mutable bool fd_given_ = false;
	Callback callback_;
};

// The user-space producer of a BPF_MAP_TYPE_USER_RINGBUF (what libbpf's user_ring_buffer
// does), safe for several producers at once, in any processes: reservations take the
// ring's lock. The program side drains with bpfmap_user_ringbuf_drain().
class BPFMAP_API UserRingProducer {
public:
	UserRingProducer() = default;

	// 0, or EBADF / EINVAL (not a BPF_MAP_TYPE_USER_RINGBUF) / EBUSY (no wait slot left).
	static int open(int map_fd, UserRingProducer &out);

	// size bytes of a new record, or nullptr with *err E2BIG (larger than the ring),
	// ENOSPC (no room now) or EFAULT (the ring's positions are corrupt). Submit or discard
	// it exactly once.
	void *reserve(size_t size, int *err = nullptr);
	// reserve(), waiting up to timeout_ms (-1: no limit) for the drainer to make room;
	// *err ETIMEDOUT when it did not.
	void *reserve_blocking(size_t size, int timeout_ms, int *err = nullptr);
	void submit(void *record);
	void discard(void *record);

private:
	detail::ring_handle h_;
};

} // namespace bpfmap
