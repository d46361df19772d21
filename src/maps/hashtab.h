// BPF_MAP_TYPE_HASH, PERCPU_HASH, LRU_HASH and LRU_PERCPU_HASH: the design, and the
// internals their pieces share. hashtab.cc has the lookups, the writers and the ops
// tables; hashtab_pool.cc the element pool and its homes; hashtab_iter.cc get_next_key and
// the batch walk; hashtab_audit.cc the repair after a writer died; hashtab_layout.cc
// creation and attach.
//
// Layout of the data area (offsets recorded in struct htab_ctl):
//
//   [ locks: n_locks x shared_lock ][ buckets: n_buckets x 64 B ][ elems: n_elems x elem_size ]
//   [ used: one bit per element ][ full: one bit per word of used bits ]
//
// A bucket is one cache line: 12 one-byte tags (0 = empty slot, else 0x80 | top hash bits),
// the head of an overflow chain, and 12 element indices. A lookup hashes the key, reads the
// bucket's tags with two loads, compares the full key only in elements whose tag matches,
// and walks the overflow chain only when a bucket ever held more than 12 keys.
//
// Elements come from a fixed pool with one "used" bit each, taken and given back by atomic
// bit operations; a second level says which words of used bits are full, so a search for
// a free element skips 4096 taken ones per load. The pool holds max_entries elements: an
// update of a key that exists rewrites it in place, so a full map needs no spare element
// (the kernel's extra_elems) to replace one. Where a new element goes: in one of its key's
// homes (below) if the map has them, else first in a word of used bits its key's hash
// picks, so that writers on different CPUs seldom meet; BPF_F_NO_PREALLOC takes the lowest
// free one, so that it touches memory only as the map grows.
//
// Homes. A lookup in a big map pays two dependent cache misses, the bucket and then the
// element. A preallocated HASH map therefore has a larger pool (1.25 or 1.125 x
// max_entries, hashtab_layout.cc says why) in which every key has two home groups of
// elements, picked by its hash: an insert takes an element in one of them when it can, and
// a lookup prefetches both while it reads the bucket, so most lookups wait for one miss.
// Placement never moves a live element.
//
// Concurrency contract:
// - Writers (update, delete, lookup_and_delete) hold the bucket's lock (striped by bucket
//   index; the lock order is below).
// - Readers take no lock. An update that adds a key fills a free element and publishes it
//   with one store (slot or chain link). An update of a key that exists rewrites the
//   element's value in place: no pool traffic, no second element's cache line, which is
//   what lets writers on several CPUs scale (LRU maps excepted: there, as in the kernel,
//   the update takes a fresh element from the LRU, which may evict).
// - Each element has a sequence count, odd while its value is being written (a fill after
//   reuse, or an in-place rewrite), and advanced when it is unlinked. The copy-out lookup
//   reads it before and after copying and retries on change, so it never returns a torn
//   value. The pointer lookup returns the element's value as the kernel helper does; a
//   concurrent update rewrites the bytes under that pointer (in the kernel the pointer
//   keeps the old element, which the pool may then reuse for another key: either way a
//   program reading through it meanwhile may see a mix), and, as in the kernel's
//   preallocated maps, a concurrent delete may let the element be reused under it.
// - Chains end in a "nulls" marker naming their bucket; a reader that was carried into
//   another chain by a reused element sees the wrong marker and restarts.
// - A writer that dies at any instruction leaves every bucket consistent; at worst one
//   element it took from the pool is unaccounted for, and the live count one too high. The
//   next writer to take that lock sees the owner died and flags an audit: with every lock
//   held, the used bits and the count are rebuilt from what the buckets hold.
//
// Lock order. The locks are the bucket locks (bucket b's is lock b & lock_mask) and, in
// LRU maps, the LRU's (core/lru_list.h). A thread that holds several took them in this
// order, any of them left out:
//   common LRU:           one CPU's local lock -> the global lock -> one bucket lock
//   BPF_F_NO_COMMON_LRU:  one CPU's list-set lock -> one bucket lock
//   the audit:            every bucket lock, in index order, and no other lock
// - Under a bucket lock taken by with_bucket_locked() (a writer, a reader that fell back
//   to the lock, get_next_key or a batch on one bucket) no other lock is taken.
// - LRU maps: an update takes its element from the LRU before it takes the bucket lock,
//   and elements unlinked under a bucket lock go back to the LRU after it is released
//   (htab_lru_unlinked). Only an eviction nests: the LRU calls htab_lru_delete_node with
//   its own locks held (one CPU's local lock, and perhaps the global one; or a CPU's list
//   set), which takes the element's bucket lock.
// - The audit runs after the writer that called for it released its bucket lock, and
//   never from an eviction (htab_lru_delete_node only flags it), so it holds no LRU lock.
// No thread waits for an LRU lock while holding a bucket lock, and only the audit holds
// two bucket locks at once, taking them in index order: no cycle.
//
// PERCPU_HASH: an element's value is one round_up(value_size, 8) slot per CPU slot (see
// core/percpu.h). A program-side update writes the caller's CPU slot; the syscall update
// writes every slot. Every in-place rewrite (HASH, PERCPU_HASH, LRU_PERCPU_HASH) runs under
// the bucket lock with the element's sequence count odd. A reader that
// keeps seeing an odd count searches under the bucket lock, which waits out a descheduled
// writer; if the writer died mid-write, the audit that follows evens the counts of linked
// elements.
//
// The region is untrusted: another process may write any bytes into it at any moment. The
// geometry (offsets, counts, sizes) is recomputed at attach from the validated header and
// kept in the handle; a control block that disagrees refuses the attach. Every element
// index read from the region (a slot, a chain link, a bit of the pool, an index the LRU
// hands back) is checked against the handle's n_elems before it is used, and every walk is
// bounded: a chain is never longer than n_elems, and a lock-free reader that keeps being
// sent back (READ_RESTARTS times) or meets an index no writer stores searches again under
// the bucket lock, where a bounded walk decides. A map found corrupt answers EFAULT (a
// lookup: ENOENT or a null pointer); it may give wrong answers, never an access outside
// its region nor a walk that does not end.
//
// A lock-free hit counts only if, after the value was copied, the slot or chain link the
// element was found through still points at it and its sequence count is unchanged: the
// value is one the key held while linked. An update fills an element only once its flags
// were checked under the bucket lock, so no element ever holds the value of an update
// that failed.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/lock.h"
#include "core/lru_list.h"
#include "core/map.h"
#include "core/shmem.h"

namespace bpfmap {

inline constexpr uint32_t SLOTS = 12;
inline constexpr uint32_t NULLS_BIT = 0x80000000u;
// What an unlinked slot holds, so that a reader that read the slot before can tell: a
// slot that still holds the same index after the value was copied still held it before.
inline constexpr uint32_t SLOT_VACANT = 0xffffffffu;
inline constexpr uint32_t READ_RESTARTS = 256; // lock-free restarts before a reader takes the lock

struct alignas(64) bucket {
	// tagw[0]: tags 0-7; tagw[1]: tags 8-11 (low half) and the overflow head (high half).
	// Written only by the lock holder, whole words, so readers get a consistent snapshot.
	std::atomic<uint64_t> tagw[2];
	std::atomic<uint32_t> slot[SLOTS];
};
static_assert(sizeof(bucket) == 64);

// An element: this header, then (LRU maps only) an htab_lru_part, then the key rounded up
// to 8, then the value. The header is all a HASH element pays beyond its key and value.
struct htab_elem {
	std::atomic<uint32_t> seq;
	std::atomic<uint32_t> next; // overflow chain
};

// What an LRU map's element adds: the eviction, which starts from an element rather than
// a key, finds the bucket from the stored hash; and the LRU's reference bit.
struct htab_lru_part {
	std::atomic<uint32_t> hash;   // low 32 bits of the key's hash
	std::atomic<uint8_t> lru_ref; // core/lru_list.h
	uint8_t pad[3];
};

struct htab_ctl {
	uint64_t seed;
	uint64_t locks_off;
	uint64_t buckets_off;
	uint64_t elems_off;
	uint32_t n_buckets;
	uint32_t n_locks;
	uint32_t n_elems;
	uint32_t elem_size;
	uint64_t lru_off;     // LRU maps: the LRU lists (core/lru_list.h) behind the elements
	uint64_t used_off;    // the pool's used bits (not for LRU maps: the LRU owns free elements)
	uint64_t full_off;    // which words of used bits are full
	uint32_t n_groups;    // home groups (0: the map places elements without homes)
	uint32_t group_elems; // elements in a home group
	// Keys in the map (not kept by LRU maps: their LRU holds every free element, and a
	// count would be one more cache line that every writer shares).
	alignas(64) std::atomic<uint32_t> count;
	std::atomic<uint32_t> needs_audit; // a writer died holding a bucket lock
};

struct bpf_htab : bpf_map {
	htab_ctl *ctl_ = nullptr;
	shared_lock *locks = nullptr;
	bucket *buckets = nullptr;
	char *elems = nullptr;
	std::atomic<uint64_t> *used = nullptr;
	std::atomic<uint64_t> *full = nullptr;
	uint32_t n_used_words = 0;
	uint32_t n_full_words = 0;
	uint32_t n_groups = 0;
	uint32_t group_elems = 0;
	uint32_t group_bytes = 0; // group_elems * elem_size
	uint32_t home_tail = 0;	  // the last byte of a home that a lookup prefetches
	uint64_t seed = 0;
	uint32_t bucket_mask = 0;
	uint32_t lock_mask = 0;
	uint32_t n_elems = 0;
	uint32_t elem_size = 0;
	uint32_t key_off = 0;	    // key offset inside an element
	uint32_t key_off_value = 0; // value offset inside an element
	bool percpu = false;
	uint32_t pcpu_size = 0; // one CPU slot of a per-CPU value: round_up(value_size, 8)
	uint32_t nr_cpus = 0;	// CPU slots of a per-CPU value
	bool is_lru = false;	// elements come from and go back to the LRU, not the pool
	bpf_lru lru;

	// Whether idx, read from the region, names an element. Every index read from the
	// region passes this before elem() is called with it.
	bool idx_ok(uint32_t idx) const { return __builtin_expect(idx < n_elems, 1); }
	htab_elem *elem(uint32_t idx) const
	{
		return reinterpret_cast<htab_elem *>(elems + static_cast<size_t>(idx) * elem_size);
	}
	char *elem_key(htab_elem *e) const { return reinterpret_cast<char *>(e) + key_off; }
	// LRU maps only.
	htab_lru_part *lru_part(htab_elem *e) const
	{
		return reinterpret_cast<htab_lru_part *>(e + 1);
	}
	char *elem_value(htab_elem *e) const { return reinterpret_cast<char *>(e) + key_off_value; }
	uint32_t index_of(const htab_elem *e) const
	{
		return static_cast<uint32_t>((reinterpret_cast<const char *>(e) - elems) /
					     elem_size);
	}
};

inline bpf_htab *htab_of(bpf_map *map) { return static_cast<bpf_htab *>(map); }

// An LRU lookup's mark: a plain store, and only when the bit is clear, so that hot
// elements' cache lines stay shared between CPUs.
inline void htab_mark_referenced(const bpf_htab *h, htab_elem *e)
{
	std::atomic<uint8_t> &ref = h->lru_part(e)->lru_ref;
	if (!ref.load(std::memory_order_relaxed))
		ref.store(1, std::memory_order_relaxed);
}

inline uint32_t roundup_pow2(uint64_t v)
{
	uint64_t p = 1;
	while (p < v)
		p <<= 1;
	return static_cast<uint32_t>(p);
}

inline uint8_t tag_of(uint64_t hash) { return static_cast<uint8_t>(0x80 | (hash >> 57)); }

// Bit 8*i+7 set for each byte of w equal to tag (exact, no false positives).
inline uint64_t match_bytes(uint64_t w, uint8_t tag)
{
	uint64_t x = w ^ (0x0101010101010101ull * tag);
	return ~(((x & 0x7f7f7f7f7f7f7f7full) + 0x7f7f7f7f7f7f7f7full) | x | 0x7f7f7f7f7f7f7f7full);
}

inline uint8_t tag_at(const uint64_t w[2], uint32_t i)
{
	return static_cast<uint8_t>(w[i / 8] >> (8 * (i % 8)));
}

// The first slot whose tag is `tag` and for which hit(slot) holds, or -1.
template <typename F> int find_slot(const uint64_t w[2], uint8_t tag, F &&hit)
{
	uint64_t m[2] = {match_bytes(w[0], tag), match_bytes(w[1] & 0xffffffffull, tag)};
	for (uint32_t half = 0; half < 2; half++) {
		for (uint64_t bits = m[half]; bits; bits &= bits - 1) {
			uint32_t i = 8 * half + static_cast<uint32_t>(__builtin_ctzll(bits)) / 8;
			if (hit(i))
				return static_cast<int>(i);
		}
	}
	return -1;
}

// KS: the map's key size where the caller knows it at compile time (lookups specialise
// the common sizes, so that hashing and comparing a key take few instructions), else 0.
template <uint32_t KS = 0> uint32_t key_len(const bpf_htab *h) { return KS ? KS : h->key_size; }

// fn(std::integral_constant<uint32_t, KS>{}): KS is the map's key size where it is a
// common one, else 0. The hot paths instantiate once per case.
template <typename F> decltype(auto) by_key_size(const bpf_htab *h, F &&fn)
{
	switch (h->key_size) {
	case 4:
		return fn(std::integral_constant<uint32_t, 4>{});
	case 8:
		return fn(std::integral_constant<uint32_t, 8>{});
	case 16:
		return fn(std::integral_constant<uint32_t, 16>{});
	default:
		return fn(std::integral_constant<uint32_t, 0>{});
	}
}

// Whether e holds key. Called only where the bucket's tag matched, which leaves one
// element in 128 to compare in vain: the key itself is the cheapest check left.
template <uint32_t KS = 0> bool elem_matches(bpf_htab *h, htab_elem *e, const void *key)
{
	return equal_shared(h->elem_key(e), key, key_len<KS>(h));
}

inline void set_chain_head(bucket *bk, uint32_t idx)
{
	uint64_t v = bk->tagw[1].load(std::memory_order_relaxed);
	bk->tagw[1].store((v & 0xffffffffull) | static_cast<uint64_t>(idx) << 32,
			  std::memory_order_release);
}

inline uint32_t chain_head(bucket *bk)
{
	return static_cast<uint32_t>(bk->tagw[1].load(std::memory_order_relaxed) >> 32);
}

// Where a key sits in its bucket: a slot, or a chain link (the word that points at it).
struct position {
	htab_elem *e = nullptr;
	int slot = -1;		   // slot index, or -1 when in the chain
	htab_elem *prev = nullptr; // chain predecessor, nullptr for the head
	int err = 0;		   // -EFAULT: the bucket is corrupt (e is null)
};

// Of word i of a bitmap over n items, the bits past item n - 1: they always read as taken
// (or full), so a search never picks them.
inline uint64_t bits_past_end(uint32_t i, uint32_t n)
{
	uint64_t first = uint64_t{i} * 64;
	if (n <= first)
		return ~0ull;
	return n - first >= 64 ? 0 : ~0ull << (n - first);
}

// One of the two home groups of a key with this hash. The bucket index comes from the
// hash's low bits; the homes come from others.
inline uint32_t home_group(const bpf_htab *h, uint64_t hash, int which)
{
	uint32_t x = which ? static_cast<uint32_t>((hash * 0x9e3779b97f4a7c15ull) >> 32)
			   : static_cast<uint32_t>(hash >> 27);
	return static_cast<uint32_t>((static_cast<uint64_t>(x) * h->n_groups) >> 32);
}

// Start loading a key's home groups into the cache: to read them (a lookup), or to write
// one (an update, which fills its new element there). A home's first and last lines are
// prefetched whether or not they are one line: a test would cost more than the prefetch.
// Always inlined: GCC deems a function made of prefetches free of effects and drops calls
// to it.
template <int RW>
[[gnu::always_inline]] inline void prefetch_homes(const bpf_htab *h, uint64_t hash)
{
	for (int which = 0; which < 2; which++) {
		const char *p =
			h->elems + static_cast<size_t>(home_group(h, hash, which)) * h->group_bytes;
		__builtin_prefetch(p, RW);
		__builtin_prefetch(p + h->home_tail, RW);
	}
}

// hashtab_pool.cc: a free element for a key with this hash, or null; an element back.
htab_elem *htab_pool_pop(bpf_htab *h, uint64_t hash);
void htab_pool_push(bpf_htab *h, htab_elem *e);

// hashtab_audit.cc: rebuild the pool and the count after a writer died.
void htab_audit(bpf_htab *h);

// hashtab.cc: find a key in bucket b without its lock (copying its value to out unless
// out is null); the pointer lookup's search of a key already hashed; find an element in a
// locked bucket by identity; unlink and free the element at p of a locked bucket; evict an
// LRU element.
htab_elem *htab_bucket_find(bpf_htab *h, uint32_t b, uint64_t hash, const void *key, void *out);
htab_elem *htab_find_hashed(bpf_htab *h, const void *key, uint64_t hash);
position htab_locate(bpf_htab *h, bucket *bk, htab_elem *e);
void htab_remove_at(bpf_htab *h, bucket *bk, const position &p);
bool htab_lru_delete_node(void *arg, uint32_t idx);

// LRU nodes of elements unlinked under a bucket lock, given back once it is released: the
// LRU's locks come before bucket locks (the lock order, above).
extern thread_local std::vector<uint32_t> htab_lru_unlinked;

// Run fn(bucket) under the bucket's lock, then the audit if any writer was found dead.
template <typename F> int with_bucket_locked(bpf_htab *h, uint32_t b, F &&fn)
{
	int ret;
	{
		lock_guard g(h->locks[b & h->lock_mask]);
		if (g.owner_died())
			h->ctl_->needs_audit.store(1, std::memory_order_relaxed);
		ret = fn(&h->buckets[b]);
	}
	if (__builtin_expect(h->ctl_->needs_audit.load(std::memory_order_acquire) != 0, 0))
		htab_audit(h);
	if (h->is_lru && !htab_lru_unlinked.empty()) {
		for (uint32_t idx : htab_lru_unlinked)
			lru_push_free(&h->lru, idx);
		htab_lru_unlinked.clear();
	}
	return ret;
}

// hashtab_layout.cc: the ops that create a map and attach to one.
int htab_map_alloc_check(const uapi::map_create_attr &attr);
int htab_map_mem_size(const uapi::map_create_attr &attr, size_t *size);
bpf_map *htab_map_alloc();
int htab_map_attach(bpf_map *map);
void htab_map_init(bpf_map *map);

// hashtab_multi.cc: the pointer lookup of many keys, their cache misses overlapped.
long htab_map_lookup_multi(bpf_map *map, const void *keys, uint32_t n, void **ptrs);

// hashtab_iter.cc: the walks over the whole map.
int htab_map_get_next_key(bpf_map *map, const void *key, void *next_key);
int htab_map_lookup_batch(bpf_map *map, const uapi::batch_attr &attr, uapi::batch_attr *uattr);
int htab_map_lookup_and_delete_batch(bpf_map *map, const uapi::batch_attr &attr,
				     uapi::batch_attr *uattr);

} // namespace bpfmap
