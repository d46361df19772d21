// The ring buffers' internals that the program-side ABI, the consumer and the mmap() of a
// ring's fd share (src/maps/ringbuf.cc).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/map.h"
#include "core/waitq.h"

namespace bpfmap {

using uapi::BPF_RINGBUF_BUSY_BIT;
using uapi::BPF_RINGBUF_DISCARD_BIT;
using uapi::BPF_RINGBUF_HDR_SZ;

// The ring space a record of size bytes takes: header and data, 8-byte aligned.
inline uint64_t ringbuf_record_len(uint64_t size) { return round_up(size + BPF_RINGBUF_HDR_SZ, 8); }

// The kernel's 8-byte record header: the length with the busy and discard bits, and the
// record's page offset from the ring's first page.
struct ringbuf_hdr {
	std::atomic<uint32_t> len;
	uint32_t pg_off;
};

// One ring as this process sees it: the positions, the data (mapped twice back to back,
// so a record that wraps is contiguous) and the consumers' wait queue. Everything it points
// at is shared and untrusted; mask is this process's own (from the validated header): a
// position is used only masked, 8-byte aligned, and a length only once checked against the
// producer position.
struct ringbuf_view {
	std::atomic<uint64_t> *consumer_pos;
	std::atomic<uint64_t> *busy; // USER_RINGBUF: the drainer's tgid << 32 | tid, 0: none
	std::atomic<uint64_t> *producer_pos;
	char *data;
	uint64_t mask;
	waitq *waiters;
};

// Which of the family's two types a map is: a RINGBUF, whose records the program side
// produces (reserve, commit, output), or a USER_RINGBUF, which user space produces and the
// program side drains. The kernel's verifier keeps each helper to its type; here the
// program-side ABI and the C++ API ask these.
bool is_ringbuf(const bpf_map *map);
bool is_user_ringbuf(const bpf_map *map);
ringbuf_view ringbuf_view_of(bpf_map *map);

// The producer side, as the kernel's helpers: reserve returns the record's data or
// nullptr; commit submits (or discards) it and wakes consumers as flags and the adaptive
// rule say; output copies in one call (0 or -errno). Any thread of the reserving process
// may commit a record; a commit of a record that is no longer this process's (reaped
// after its process was taken for dead, or not a record of a ring at all) does nothing.
void *ringbuf_reserve(bpf_map *map, uint64_t size, uint64_t flags);
void ringbuf_commit(void *sample, uint64_t flags, bool discard);
long ringbuf_output(bpf_map *map, const void *data, uint64_t size, uint64_t flags);
uint64_t ringbuf_query(bpf_map *map, uint64_t flags);

// The record the consumer waits at is BUSY and its producer's process is gone: discard it
// so the consumer can go on. Returns whether it did. Costs a system call when the head is BUSY.
bool ringbuf_reap_dead_head(bpf_map *map);

// USER_RINGBUF. drain: the kernel's bpf_user_ringbuf_drain (records drained, or -errno;
// a callback's nonzero return stops after its record). reserve and commit: user space's
// producer side, as libbpf's user_ring_buffer does it but under the ring's lock, so
// several producers may share a ring; reserve fails with *err E2BIG or ENOSPC.
using user_ringbuf_callback = long (*)(const void *data, uint64_t size, void *ctx);
long user_ringbuf_drain(bpf_map *map, user_ringbuf_callback cb, void *ctx, uint64_t flags);
void *user_ringbuf_reserve(bpf_map *map, uint64_t size, int *err);
void user_ringbuf_commit(void *sample, bool discard);

} // namespace bpfmap
