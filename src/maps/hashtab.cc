// BPF_MAP_TYPE_HASH and BPF_MAP_TYPE_PERCPU_HASH.
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
// a free element skips 4096 taken ones per load. The pool holds max_entries + n_locks
// elements: the n_locks spares let every bucket lock holder replace an existing key even
// when the map is full, as the kernel's extra_elems do. Free elements are taken lowest
// first, so BPF_F_NO_PREALLOC touches memory only as the map grows.
//
// Homes. A lookup in a big map pays two dependent cache misses, the bucket and then the
// element. A preallocated HASH map therefore has a larger pool (1.5 x max_entries +
// n_locks) in which every key has two home groups of elements, picked by its hash: an
// insert takes an element in one of them when it can, and a lookup prefetches both while it
// reads the bucket, so most lookups wait for one miss. Placement never moves a live element.
//
// Concurrency contract:
// - Writers (update, delete, lookup_and_delete) hold the bucket's lock (striped by bucket
//   index). Lock order: a writer holds one bucket lock at a time, never another lock.
// - Readers take no lock. An update never overwrites a live element: it fills a fresh one
//   and publishes it with one store (slot or chain link), then frees the old one.
// - Each element has a sequence count, made odd while the element is being refilled after
//   reuse, and advanced when it is unlinked. The copy-out lookup reads it before and after copying and retries on change, so
//   it never returns a torn value. The pointer lookup returns the element's value as the
//   kernel helper does; like the kernel's preallocated maps, a concurrent delete may let
//   the element be reused under the caller.
// - Chains end in a "nulls" marker naming their bucket; a reader that was carried into
//   another chain by a reused element sees the wrong marker and restarts.
// - A writer that dies at any instruction leaves every bucket consistent; at worst one
//   element it took from the pool is unaccounted for, and the live count one too high. The
//   next writer to take that lock sees the owner died and flags an audit: with every lock
//   held, the used bits and the count are rebuilt from what the buckets hold.
//
// PERCPU_HASH: an element's value is one round_up(value_size, 8) slot per CPU slot (see
// core/percpu.h). As in the kernel, an update of a key that exists writes its value in
// place (so pointers that lookups returned stay valid): under the bucket lock, with the
// element's sequence count odd meanwhile, so copy-out lookups retry rather than return a
// torn value. A program-side update writes the caller's CPU slot; the syscall update
// writes every slot. There are no spare elements: nothing is ever replaced. A reader that
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
#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <random>
#include <sched.h>
#include <vector>

#include "core/hash.h"
#include "core/lock.h"
#include "core/lru_list.h"
#include "core/map.h"
#include "core/percpu.h"
#include "core/registry.h"
#include "core/shmem.h"
#include "core/batch.h"
#include "core/uaccess.h"

namespace bpfmap {
namespace {

constexpr uint32_t SLOTS = 12;
constexpr uint32_t NULLS_BIT = 0x80000000u;
// What an unlinked slot holds, so that a reader that read the slot before can tell: a
// slot that still holds the same index after the value was copied still held it before.
constexpr uint32_t SLOT_VACANT = 0xffffffffu;
constexpr uint32_t MAX_LOCKS = 1024;
constexpr uint32_t KEYS_PER_BUCKET = 6; // sizing: average load between 3 and 6 of 12
// The kernel's limits: an element (its 48-byte header, key and value) must fit one
// kmalloc (4 MiB), and its 16-byte bucket array must stay below 2^31 bytes.
constexpr uint64_t MAX_KEY_VALUE_SIZE = (1ull << 22) - 48;
constexpr uint32_t MAX_ENTRIES = 1u << 27;
constexpr uint32_t HTAB_CREATE_FLAG_MASK = uapi::BPF_F_NO_PREALLOC | uapi::BPF_F_NO_COMMON_LRU |
					   uapi::BPF_F_NUMA_NODE | uapi::BPF_F_ACCESS_MASK |
					   uapi::BPF_F_ZERO_SEED;

struct alignas(64) bucket {
	// tagw[0]: tags 0-7; tagw[1]: tags 8-11 (low half) and the overflow head (high half).
	// Written only by the lock holder, whole words, so readers get a consistent snapshot.
	std::atomic<uint64_t> tagw[2];
	std::atomic<uint32_t> slot[SLOTS];
};
static_assert(sizeof(bucket) == 64);

struct htab_elem {
	std::atomic<uint32_t> seq;
	std::atomic<uint32_t> next; // overflow chain
	std::atomic<uint32_t> hash; // low 32 bits of the key's hash
	std::atomic<uint8_t> lru_ref; // LRU maps: the reference bit (core/lru_list.h)
	uint8_t pad[3];
	// key, rounded up to 8, then value
};

// An LRU lookup's mark: a plain store, and only when the bit is clear, so that hot
// elements' cache lines stay shared between CPUs.
void mark_referenced(htab_elem *e)
{
	if (!e->lru_ref.load(std::memory_order_relaxed))
		e->lru_ref.store(1, std::memory_order_relaxed);
}

struct htab_ctl {
	uint64_t seed;
	uint64_t locks_off;
	uint64_t buckets_off;
	uint64_t elems_off;
	uint32_t n_buckets;
	uint32_t n_locks;
	uint32_t n_elems;
	uint32_t elem_size;
	uint64_t lru_off; // LRU maps: the LRU lists (core/lru_list.h) behind the elements
	uint64_t used_off; // the pool's used bits (not for LRU maps: the LRU owns free elements)
	uint64_t full_off; // which words of used bits are full
	uint32_t n_groups; // home groups (0: the map places elements without homes)
	uint32_t group_elems; // elements in a home group
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
	uint32_t home_tail = 0;   // the last byte of a home that a lookup prefetches
	uint64_t seed = 0;
	uint32_t bucket_mask = 0;
	uint32_t lock_mask = 0;
	uint32_t n_elems = 0;
	uint32_t elem_size = 0;
	uint32_t key_off_value = 0; // value offset inside an element
	bool percpu = false;
	uint32_t pcpu_size = 0; // one CPU slot of a per-CPU value: round_up(value_size, 8)
	uint32_t nr_cpus = 0;   // CPU slots of a per-CPU value
	bool is_lru = false;    // elements come from and go back to the LRU, not the pool
	bpf_lru lru;

	// Whether idx, read from the region, names an element. Every index read from the
	// region passes this before elem() is called with it.
	bool idx_ok(uint32_t idx) const { return __builtin_expect(idx < n_elems, 1); }
	htab_elem *elem(uint32_t idx) const
	{
		return reinterpret_cast<htab_elem *>(elems + static_cast<size_t>(idx) * elem_size);
	}
	char *elem_key(htab_elem *e) const { return reinterpret_cast<char *>(e + 1); }
	char *elem_value(htab_elem *e) const { return reinterpret_cast<char *>(e) + key_off_value; }
	uint32_t index_of(const htab_elem *e) const
	{
		return static_cast<uint32_t>((reinterpret_cast<const char *>(e) - elems) / elem_size);
	}
};

bpf_htab *htab_of(bpf_map *map) { return static_cast<bpf_htab *>(map); }

uint32_t roundup_pow2(uint64_t v)
{
	uint64_t p = 1;
	while (p < v)
		p <<= 1;
	return static_cast<uint32_t>(p);
}

uint8_t tag_of(uint64_t hash) { return static_cast<uint8_t>(0x80 | (hash >> 57)); }

// Bit 8*i+7 set for each byte of w equal to tag (exact, no false positives).
uint64_t match_bytes(uint64_t w, uint8_t tag)
{
	uint64_t x = w ^ (0x0101010101010101ull * tag);
	return ~(((x & 0x7f7f7f7f7f7f7f7full) + 0x7f7f7f7f7f7f7f7full) | x | 0x7f7f7f7f7f7f7f7full);
}

uint8_t tag_at(const uint64_t w[2], uint32_t i)
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

// LRU nodes of elements unlinked under a bucket lock, given back once it is released: the
// LRU's locks come before bucket locks.
thread_local std::vector<uint32_t> lru_unlinked;

// ---- element pool --------------------------------------------------------------------

uint32_t used_words(uint32_t n_elems) { return (n_elems + 63) / 64; }

// Of word i of a bitmap over n items, the bits past item n - 1: they always read as taken
// (or full), so a search never picks them.
uint64_t bits_past_end(uint32_t i, uint32_t n)
{
	uint64_t first = uint64_t{i} * 64;
	if (n <= first)
		return ~0ull;
	return n - first >= 64 ? 0 : ~0ull << (n - first);
}

// Say in the second level that word i of used bits is full. A give-back that raced with us
// may have freed a bit before we set ours: look again, and undo if so. (A give-back after
// our look finds the word was full and clears the bit itself.)
void mark_full(bpf_htab *h, uint32_t i)
{
	std::atomic<uint64_t> &f = h->full[i / 64];
	uint64_t bit = 1ull << (i % 64);
	f.fetch_or(bit, std::memory_order_seq_cst);
	if (h->used[i].load(std::memory_order_seq_cst) != ~0ull)
		f.fetch_and(~bit, std::memory_order_seq_cst);
}

// Take element idx if it is free.
bool pool_take(bpf_htab *h, uint32_t idx)
{
	std::atomic<uint64_t> &w = h->used[idx / 64];
	uint64_t bit = 1ull << (idx % 64);
	if (w.load(std::memory_order_relaxed) & bit)
		return false;
	uint64_t old = w.fetch_or(bit, std::memory_order_seq_cst);
	if (old & bit)
		return false;
	if ((old | bit) == ~0ull)
		mark_full(h, idx / 64);
	return true;
}

// Take the lowest free element of word i of used bits, if it has one. Bits past the last
// element count as taken whatever the region says, and the word is given up after 64
// tries: each failed one means some other taker won the bit.
htab_elem *pool_take_in_word(bpf_htab *h, uint32_t i)
{
	std::atomic<uint64_t> &w = h->used[i];
	const uint64_t past = bits_past_end(i, h->n_elems);
	for (uint32_t tries = 0; tries < 64; tries++) {
		uint64_t v = w.load(std::memory_order_relaxed) | past;
		if (v == ~0ull)
			break;
		uint32_t idx = i * 64 + static_cast<uint32_t>(__builtin_ctzll(~v));
		if (pool_take(h, idx))
			return h->elem(idx);
	}
	mark_full(h, i);
	return nullptr;
}

// Take a free element, searching from word `start` of the second level on. Second-level
// bits past the last word of used bits count as full whatever the region says.
htab_elem *pool_take_any(bpf_htab *h, uint32_t start)
{
	for (uint32_t k = 0; k < h->n_full_words; k++) {
		uint32_t f = start + k < h->n_full_words ? start + k : start + k - h->n_full_words;
		uint64_t v = h->full[f].load(std::memory_order_relaxed) |
			     bits_past_end(f, h->n_used_words);
		while (v != ~0ull) {
			uint32_t i = f * 64 + static_cast<uint32_t>(__builtin_ctzll(~v));
			if (htab_elem *e = pool_take_in_word(h, i))
				return e;
			v |= 1ull << (i % 64);
		}
	}
	return nullptr;
}

// One of the two home groups of a key with this hash. The bucket index comes from the
// hash's low bits; the homes come from others.
uint32_t home_group(const bpf_htab *h, uint64_t hash, int which)
{
	uint32_t x = which ? static_cast<uint32_t>((hash * 0x9e3779b97f4a7c15ull) >> 32)
			   : static_cast<uint32_t>(hash >> 27);
	return static_cast<uint32_t>((static_cast<uint64_t>(x) * h->n_groups) >> 32);
}

// The first element of that home group.
uint32_t home_first(const bpf_htab *h, uint64_t hash, int which)
{
	return home_group(h, hash, which) * h->group_elems;
}

// Start loading a key's home groups into the cache: to read them (a lookup), or to write
// one (an update, which fills its new element there). A home's first and last lines are
// prefetched whether or not they are one line: a test would cost more than the prefetch.
// Always inlined: GCC deems a function made of prefetches free of effects and drops calls
// to it.
template <int RW> [[gnu::always_inline]] inline void prefetch_homes(const bpf_htab *h, uint64_t hash)
{
	for (int which = 0; which < 2; which++) {
		const char *p = h->elems + static_cast<size_t>(home_group(h, hash, which)) * h->group_bytes;
		__builtin_prefetch(p, RW);
		__builtin_prefetch(p + h->home_tail, RW);
	}
}

// A free element for a key with this hash: in one of its homes if one has room, else
// anywhere, searching from a place the hash picks so that free elements stay spread out.
// Without homes: the lowest free one.
htab_elem *pool_pop(bpf_htab *h, uint64_t hash)
{
	if (!h->n_groups)
		return pool_take_any(h, 0);
	for (int which = 0; which < 2; which++) {
		uint32_t first = home_first(h, hash, which);
		for (uint32_t idx = first; idx < first + h->group_elems; idx++)
			if (pool_take(h, idx))
				return h->elem(idx);
	}
	return pool_take_any(h, home_first(h, hash, 0) / 4096);
}

void pool_push(bpf_htab *h, htab_elem *e)
{
	uint32_t idx = h->index_of(e);
	uint64_t old = h->used[idx / 64].fetch_and(~(1ull << (idx % 64)), std::memory_order_seq_cst);
	if (old == ~0ull)
		h->full[idx / 4096].fetch_and(~(1ull << (idx / 64 % 64)), std::memory_order_seq_cst);
}

// Count one more element unless the map is full. Each failed exchange means the count
// changed meanwhile; a count that never stops changing (another process writing it) gives
// up after many, as a full map.
bool count_inc_below_max(bpf_htab *h)
{
	std::atomic<uint32_t> &cnt = h->ctl_->count;
	uint32_t n = cnt.load(std::memory_order_relaxed);
	for (uint32_t tries = 0; n < h->max_entries && tries < 65536; tries++)
		if (cnt.compare_exchange_weak(n, n + 1, std::memory_order_relaxed))
			return true;
	return false;
}

// What an update writes: the whole value area (a plain value, or a syscall update's value
// for every CPU), or one CPU slot of a per-CPU value (a program-side update).
struct value_src {
	const void *bytes;
	int cpu = -1; // the CPU slot a program-side per-CPU update writes; -1: the whole area
};

// Write v into an element's value area. A program-side update that creates a key zeroes
// the other CPUs' values, as the kernel does; like the kernel's, it leaves each slot's
// padding as the element's previous key left it (zero in a never-used element).
void write_value(bpf_htab *h, char *dst, value_src v, bool fresh)
{
	if (v.cpu < 0) {
		copy_to_shared(dst, v.bytes, h->uvalue_size);
		return;
	}
	if (fresh)
		for (uint32_t cpu = 0; cpu < h->nr_cpus; cpu++)
			if (cpu != static_cast<uint32_t>(v.cpu))
				zero_shared(dst + static_cast<size_t>(cpu) * h->pcpu_size, h->value_size);
	copy_to_shared(dst + static_cast<size_t>(v.cpu) * h->pcpu_size, v.bytes, h->value_size);
}

// Fill a fresh element; it becomes visible only when the caller publishes it.
htab_elem *elem_fill(bpf_htab *h, htab_elem *e, uint64_t hash, const void *key, value_src value)
{
	// Odd while being written, and different from before. The seq may already be odd: a
	// writer killed in the middle of a fill left it so before the audit freed the element.
	uint32_t busy = (e->seq.load(std::memory_order_relaxed) | 1) + 2;
	e->seq.store(busy, std::memory_order_relaxed);
	std::atomic_thread_fence(std::memory_order_release);
	e->hash.store(static_cast<uint32_t>(hash), std::memory_order_relaxed);
	copy_to_shared(h->elem_key(e), key, h->key_size);
	write_value(h, h->elem_value(e), value, true);
	e->seq.store(busy + 1, std::memory_order_release);
	return e;
}

// Rewrite a linked per-CPU element's value (bucket lock held); its count is odd meanwhile.
void elem_rewrite(bpf_htab *h, htab_elem *e, value_src value)
{
	uint32_t seq = e->seq.load(std::memory_order_relaxed);
	e->seq.store(seq + 1, std::memory_order_relaxed);
	std::atomic_thread_fence(std::memory_order_release);
	write_value(h, h->elem_value(e), value, false);
	e->seq.store(seq + 2, std::memory_order_release);
}

// ---- lookup --------------------------------------------------------------------------

// KS: the map's key size where the caller knows it at compile time (lookups specialise
// the common sizes, so that hashing and comparing a key take few instructions), else 0.
template <uint32_t KS = 0> uint32_t key_len(const bpf_htab *h) { return KS ? KS : h->key_size; }

template <uint32_t KS = 0> bool elem_matches(bpf_htab *h, htab_elem *e, uint64_t hash, const void *key)
{
	return e->hash.load(std::memory_order_relaxed) == static_cast<uint32_t>(hash) &&
	       equal_shared(h->elem_key(e), key, key_len<KS>(h));
}

enum class probe_result { hit, miss, retry };

// Whether e holds key, judged consistently: the element's sequence count is read before
// and after, so an element reused for another key while we looked says "retry" rather
// than "miss" (a miss then could skip the key's replacement, published in a slot we
// already passed). On a hit the value is copied to out, if out is not null. Inlined: it is
// most of a lookup, and a call would cost the quick path a frame.
template <uint32_t KS = 0>
[[gnu::always_inline]] inline probe_result probe(bpf_htab *h, htab_elem *e, uint64_t hash,
						 const void *key, void *out, uint32_t *seq = nullptr)
{
	uint32_t s = e->seq.load(std::memory_order_acquire);
	if (seq)
		*seq = s;
	if (s & 1)
		return probe_result::retry;
	bool hit = elem_matches<KS>(h, e, hash, key);
	if (hit && out)
		copy_from_shared(out, h->elem_value(e), h->uvalue_size);
	std::atomic_thread_fence(std::memory_order_acquire);
	if (e->seq.load(std::memory_order_relaxed) != s)
		return probe_result::retry;
	return hit ? probe_result::hit : probe_result::miss;
}

constexpr uint32_t READ_RESTARTS = 256; // lock-free restarts before a reader takes the lock

// After probe() said hit on the element e (index idx, sequence count s) of slot i: whether
// slot i still holds e and e is unchanged, read after the value was copied. Only then was
// the value the key's while e was linked: an unlink leaves SLOT_VACANT in the slot, and an
// element that returns to it was refilled first (it is published with a release store).
[[gnu::always_inline]] inline bool slot_still(bucket *bk, uint32_t i, uint32_t idx, htab_elem *e,
					      uint32_t s)
{
	return bk->slot[i].load(std::memory_order_acquire) == idx &&
	       e->seq.load(std::memory_order_relaxed) == s;
}

// One lock-free search of a bucket. corrupt: an index no writer stores, or a chain longer
// than the pool; retry: something changed under us (a chain that ends in another bucket's
// marker says so too: a reused element carried the walk there).
enum class find_state { hit, miss, retry, corrupt };

find_state bucket_find_once(bpf_htab *h, bucket *bk, uint32_t b, uint64_t hash, const void *key,
			    void *out, htab_elem **found)
{
	uint8_t tag = tag_of(hash);
	uint64_t w[2] = {bk->tagw[0].load(std::memory_order_acquire),
			 bk->tagw[1].load(std::memory_order_acquire)};
	find_state st = find_state::miss;
	find_slot(w, tag, [&](uint32_t i) {
		uint32_t idx = bk->slot[i].load(std::memory_order_acquire);
		if (!h->idx_ok(idx)) {
			// Vacant: unlinked since we read the tag.
			st = idx == SLOT_VACANT ? find_state::retry : find_state::corrupt;
			return true;
		}
		htab_elem *e = h->elem(idx);
		uint32_t seq;
		probe_result r = probe(h, e, hash, key, out, &seq);
		if (r == probe_result::hit && !slot_still(bk, i, idx, e, seq))
			r = probe_result::retry;
		// A miss on an element that left the slot meanwhile may have been the old copy
		// of our key, replaced in this very slot after we read it: look again. The seq
		// (advanced by every unlink and refill) tells a return of the same element to
		// the slot from one that never left.
		if (r == probe_result::miss &&
		    (bk->slot[i].load(std::memory_order_acquire) != idx ||
		     e->seq.load(std::memory_order_acquire) != seq))
			r = probe_result::retry;
		if (r == probe_result::miss)
			return false;
		*found = e;
		st = r == probe_result::hit ? find_state::hit : find_state::retry;
		return true;
	});
	if (st != find_state::miss)
		return st;
	uint32_t idx = static_cast<uint32_t>(w[1] >> 32);
	htab_elem *prev = nullptr;
	uint32_t prev_seq = 0;
	for (uint32_t steps = 0; !(idx & NULLS_BIT); steps++) {
		if (!h->idx_ok(idx) || steps >= h->n_elems)
			return find_state::corrupt;
		htab_elem *e = h->elem(idx);
		uint32_t seq;
		probe_result r = probe(h, e, hash, key, out, &seq);
		if (r == probe_result::retry)
			return find_state::retry;
		// A hit or a miss counts only if e was still linked where we found it, behind a
		// predecessor that was itself still linked (unlinking bumps an element's seq):
		// an element unlinked and reused under us would lead past our key's replacement,
		// or hand us a value the key no longer had.
		uint32_t link = prev ? prev->next.load(std::memory_order_acquire)
				     : static_cast<uint32_t>(
					       bk->tagw[1].load(std::memory_order_acquire) >> 32);
		if (link != idx || (prev && prev->seq.load(std::memory_order_acquire) != prev_seq))
			return find_state::retry;
		if (r == probe_result::hit) {
			if (e->seq.load(std::memory_order_relaxed) != seq)
				return find_state::retry;
			*found = e;
			return find_state::hit;
		}
		prev = e;
		prev_seq = seq;
		idx = e->next.load(std::memory_order_acquire);
		if (e->seq.load(std::memory_order_acquire) != seq)
			return find_state::retry; // e left the chain before we read where it leads
	}
	if (idx != (NULLS_BIT | b))
		return find_state::retry; // carried into another chain by a reused element
	return find_state::miss;
}

htab_elem *bucket_find_locked(bpf_htab *h, uint32_t b, uint64_t hash, const void *key, void *out);

// Lock-free search of one bucket: slots whose tag matches, then the overflow chain. Starts
// over when an element changed under it; after READ_RESTARTS of those, or at once on a
// bucket that looks corrupt, searches under the bucket lock instead.
htab_elem *bucket_find(bpf_htab *h, uint32_t b, uint64_t hash, const void *key, void *out)
{
	bucket *bk = &h->buckets[b];
	for (uint32_t tries = 0; tries < READ_RESTARTS; tries++) {
		htab_elem *e = nullptr;
		find_state st = bucket_find_once(h, bk, b, hash, key, out, &e);
		if (st == find_state::hit)
			return e;
		if (st == find_state::miss)
			return nullptr;
		if (st == find_state::corrupt)
			break;
	}
	return bucket_find_locked(h, b, hash, key, out);
}

// bucket_find's common cases in few instructions, so that back-to-back lookups that miss
// the cache overlap in the CPU: the first slot whose tag matches holds the key (a hit as
// probe() judges one, still in its slot afterwards), or no tag matches and the bucket has
// no chain (a miss). Anything else is not decided here.
enum class quick_result { hit, miss, unsure };

template <uint32_t KS>
[[gnu::always_inline]] inline quick_result bucket_find_quick(bpf_htab *h, uint32_t b, uint64_t hash, const void *key, void *out,
			       htab_elem **found)
{
	bucket *bk = &h->buckets[b];
	uint8_t tag = tag_of(hash);
	uint64_t m = match_bytes(bk->tagw[0].load(std::memory_order_acquire), tag);
	uint32_t i = 0;
	if (!m) {
		uint64_t w1 = bk->tagw[1].load(std::memory_order_acquire);
		m = match_bytes(w1 & 0xffffffffull, tag);
		if (!m)
			return w1 >> 32 == (NULLS_BIT | b) ? quick_result::miss : quick_result::unsure;
		i = 8;
	}
	i += static_cast<uint32_t>(__builtin_ctzll(m)) / 8;
	uint32_t idx = bk->slot[i].load(std::memory_order_acquire);
	if (!h->idx_ok(idx))
		return quick_result::unsure;
	// probe() and slot_still() in one: the count is read before the key and after the
	// slot, which is read after the value.
	htab_elem *e = h->elem(idx);
	uint32_t s = e->seq.load(std::memory_order_acquire);
	if ((s & 1) || !elem_matches<KS>(h, e, hash, key))
		return quick_result::unsure;
	if (out)
		copy_from_shared(out, h->elem_value(e), h->uvalue_size);
	std::atomic_thread_fence(std::memory_order_acquire);
	if (!slot_still(bk, i, idx, e, s))
		return quick_result::unsure;
	*found = e;
	return quick_result::hit;
}

// Not inlined into htab_find: each key size, with or without a value to copy out, gets a
// frame of its own, as small as it can be (a lookup that copies nothing makes no calls).
template <uint32_t KS, bool COPY>
[[gnu::noinline]] htab_elem *htab_find_sized(bpf_htab *h, const void *key, void *out)
{
	if (!COPY)
		out = nullptr;
	uint64_t hash = hash_key(key, key_len<KS>(h), h->seed);
	uint32_t b = static_cast<uint32_t>(hash) & h->bucket_mask;
	if (h->n_groups)
		prefetch_homes<0>(h, hash);
	htab_elem *e = nullptr;
	quick_result r = bucket_find_quick<KS>(h, b, hash, key, out, &e);
	if (__builtin_expect(r != quick_result::unsure, 1))
		return e;
	return bucket_find(h, b, hash, key, out);
}

template <bool COPY> htab_elem *htab_find_copying(bpf_htab *h, const void *key, void *out)
{
	switch (h->key_size) {
	case 4:
		return htab_find_sized<4, COPY>(h, key, out);
	case 8:
		return htab_find_sized<8, COPY>(h, key, out);
	case 16:
		return htab_find_sized<16, COPY>(h, key, out);
	default:
		return htab_find_sized<0, COPY>(h, key, out);
	}
}

// Find key, copying its value to out when out is not null.
htab_elem *htab_find(bpf_htab *h, const void *key, void *out)
{
	return out ? htab_find_copying<true>(h, key, out) : htab_find_copying<false>(h, key, out);
}

void *htab_map_lookup_elem(bpf_map *map, const void *key)
{
	bpf_htab *h = htab_of(map);
	htab_elem *e = htab_find(h, key, nullptr);
	return e ? h->elem_value(e) : nullptr;
}

int htab_map_copy_value(bpf_map *map, const void *key, void *value, uint64_t)
{
	return htab_find(htab_of(map), key, value) ? 0 : -ENOENT;
}

void *percpu_value(bpf_htab *h, const void *key, uint32_t slot)
{
	htab_elem *e = htab_find(h, key, nullptr);
	return e ? h->elem_value(e) + static_cast<size_t>(slot) * h->pcpu_size : nullptr;
}

void *htab_percpu_map_lookup_elem(bpf_map *map, const void *key)
{
	return percpu_value(htab_of(map), key, this_cpu_slot(htab_of(map)->nr_cpus));
}

void *htab_percpu_map_lookup_percpu_elem(bpf_map *map, const void *key, uint32_t slot)
{
	return percpu_value(htab_of(map), key, slot);
}

// ---- writers (bucket lock held) -------------------------------------------------------

// Where a key sits in its bucket: a slot, or a chain link (the word that points at it).
struct position {
	htab_elem *e = nullptr;
	int slot = -1;                          // slot index, or -1 when in the chain
	htab_elem *prev = nullptr;              // chain predecessor, nullptr for the head
	int err = 0;                            // -EFAULT: the bucket is corrupt (e is null)
};

// Where key sits in a locked bucket. A slot or link that names no element, or a chain
// longer than the pool, makes the bucket corrupt.
position locked_find(bpf_htab *h, bucket *bk, uint64_t hash, const void *key)
{
	position p;
	uint64_t w[2] = {bk->tagw[0].load(std::memory_order_relaxed),
			 bk->tagw[1].load(std::memory_order_relaxed)};
	p.slot = find_slot(w, tag_of(hash), [&](uint32_t i) {
		uint32_t idx = bk->slot[i].load(std::memory_order_relaxed);
		if (!h->idx_ok(idx)) {
			p.err = -EFAULT;
			return true;
		}
		p.e = h->elem(idx);
		return elem_matches(h, p.e, hash, key);
	});
	if (p.err)
		return {.err = p.err};
	if (p.slot >= 0)
		return p;
	p.e = nullptr;
	uint32_t idx = static_cast<uint32_t>(w[1] >> 32);
	htab_elem *prev = nullptr;
	for (uint32_t steps = 0; !(idx & NULLS_BIT); steps++) {
		if (!h->idx_ok(idx) || steps >= h->n_elems)
			return {.err = -EFAULT};
		htab_elem *e = h->elem(idx);
		if (elem_matches(h, e, hash, key)) {
			p.e = e;
			p.prev = prev;
			return p;
		}
		prev = e;
		idx = e->next.load(std::memory_order_relaxed);
	}
	return p;
}

void set_tag(bucket *bk, uint32_t i, uint8_t tag)
{
	std::atomic<uint64_t> &w = bk->tagw[i / 8];
	uint64_t v = w.load(std::memory_order_relaxed);
	uint32_t shift = 8 * (i % 8);
	v = (v & ~(0xffull << shift)) | (static_cast<uint64_t>(tag) << shift);
	w.store(v, std::memory_order_release);
}

void set_chain_head(bucket *bk, uint32_t idx)
{
	uint64_t v = bk->tagw[1].load(std::memory_order_relaxed);
	bk->tagw[1].store((v & 0xffffffffull) | static_cast<uint64_t>(idx) << 32,
			  std::memory_order_release);
}

uint32_t chain_head(bucket *bk)
{
	return static_cast<uint32_t>(bk->tagw[1].load(std::memory_order_relaxed) >> 32);
}

// Mark an element that was just unlinked, so that a reader who reached it through a stale
// link, or who stands on it in a chain, notices (see bucket_find).
void retire(htab_elem *e)
{
	e->seq.store(e->seq.load(std::memory_order_relaxed) + 2, std::memory_order_release);
}

// Put e where old was (same slot or same chain link).
void replace_at(bpf_htab *h, bucket *bk, const position &p, htab_elem *e)
{
	uint32_t idx = h->index_of(e);
	if (p.slot >= 0) {
		bk->slot[p.slot].store(idx, std::memory_order_release);
		return;
	}
	e->next.store(p.e->next.load(std::memory_order_relaxed), std::memory_order_relaxed);
	if (p.prev)
		p.prev->next.store(idx, std::memory_order_release);
	else
		set_chain_head(bk, idx);
}

void insert_new(bpf_htab *h, bucket *bk, uint64_t hash, htab_elem *e)
{
	uint32_t idx = h->index_of(e);
	uint64_t w[2] = {bk->tagw[0].load(std::memory_order_relaxed),
			 bk->tagw[1].load(std::memory_order_relaxed)};
	for (uint32_t i = 0; i < SLOTS; i++) {
		if (tag_at(w, i) != 0)
			continue;
		// Release, as the tag: a reader that sees the index sees the element filled
		// (slot_still() reads the slot last).
		bk->slot[i].store(idx, std::memory_order_release);
		set_tag(bk, i, tag_of(hash));
		return;
	}
	e->next.store(chain_head(bk), std::memory_order_relaxed);
	set_chain_head(bk, idx);
}

void unlink_at(bucket *bk, const position &p)
{
	if (p.slot >= 0) {
		set_tag(bk, static_cast<uint32_t>(p.slot), 0);
		bk->slot[p.slot].store(SLOT_VACANT, std::memory_order_release);
		return;
	}
	uint32_t next = p.e->next.load(std::memory_order_relaxed);
	if (p.prev)
		p.prev->next.store(next, std::memory_order_release);
	else
		set_chain_head(bk, next);
}

int check_update_flags(uint64_t flags)
{
	if ((flags & ~uapi::BPF_F_LOCK) > uapi::BPF_EXIST)
		return -EINVAL;
	if (flags & uapi::BPF_F_LOCK)
		return -EINVAL; // no value carries a bpf_spin_lock (no BTF yet)
	return 0;
}

int update_locked(bpf_htab *h, bucket *bk, uint64_t hash, const void *key, value_src value,
		  uint64_t flags)
{
	position p = locked_find(h, bk, hash, key);
	if (p.err)
		return p.err;
	if (p.e && flags == uapi::BPF_NOEXIST)
		return -EEXIST;
	if (!p.e && flags == uapi::BPF_EXIST)
		return -ENOENT;
	if (p.e && h->percpu) {
		elem_rewrite(h, p.e, value);
		return 0;
	}
	if (!p.e && !count_inc_below_max(h))
		return -E2BIG;
	htab_elem *e = pool_pop(h, hash);
	if (!e) {
		// Only reachable while elements stranded by a dead writer await the audit.
		if (!p.e)
			h->ctl_->count.fetch_sub(1, std::memory_order_relaxed);
		return p.e ? -ENOMEM : -E2BIG;
	}
	if (e == p.e)
		return -EFAULT; // the used bits said a linked element was free
	elem_fill(h, e, hash, key, value);
	if (p.e) {
		replace_at(h, bk, p, e);
		retire(p.e);
		pool_push(h, p.e);
	} else {
		insert_new(h, bk, hash, e);
	}
	return 0;
}

// Rebuild the used bits and the live count from the buckets, with every lock held so that
// no element is in a writer's hands. Safe to die in: a used bit is only ever cleared for an
// element no bucket holds, and the flag stays set until the end.
void htab_audit(bpf_htab *h)
{
	htab_ctl *c = h->ctl_;
	for (uint32_t i = 0; i <= h->lock_mask; i++)
		h->locks[i].lock();
	if (c->needs_audit.load(std::memory_order_relaxed)) {
		uint32_t n = h->n_elems;
		std::vector<bool> live(n);
		uint32_t count = 0;
		auto mark = [&](uint32_t idx) {
			if (idx < n && !live[idx]) {
				live[idx] = true;
				count++;
				// Odd: a per-CPU value's writer died mid-write. Readers wait on it.
				std::atomic<uint32_t> &seq = h->elem(idx)->seq;
				uint32_t s = seq.load(std::memory_order_relaxed);
				if (s & 1)
					seq.store(s + 1, std::memory_order_release);
			}
		};
		for (uint32_t b = 0; b <= h->bucket_mask; b++) {
			bucket *bk = &h->buckets[b];
			uint64_t w[2] = {bk->tagw[0].load(std::memory_order_relaxed),
					 bk->tagw[1].load(std::memory_order_relaxed)};
			for (uint32_t i = 0; i < SLOTS; i++)
				if (tag_at(w, i))
					mark(bk->slot[i].load(std::memory_order_relaxed));
			uint32_t idx = chain_head(bk);
			for (uint32_t steps = 0; !(idx & NULLS_BIT) && idx < n && steps < n; steps++) {
				mark(idx);
				idx = h->elem(idx)->next.load(std::memory_order_relaxed);
			}
		}
		// An LRU map's free elements are the LRU's: it keeps its own lists.
		for (uint32_t i = 0; i < h->n_used_words; i++) {
			uint64_t bits = bits_past_end(i, n);
			for (uint32_t j = 0; j < 64 && i * 64 + j < n; j++)
				if (live[i * 64 + j])
					bits |= 1ull << j;
			h->used[i].store(bits, std::memory_order_relaxed);
		}
		for (uint32_t f = 0; f < h->n_full_words; f++) {
			uint64_t bits = bits_past_end(f, h->n_used_words);
			for (uint32_t j = 0; j < 64 && f * 64 + j < h->n_used_words; j++)
				if (h->used[f * 64 + j].load(std::memory_order_relaxed) == ~0ull)
					bits |= 1ull << j;
			h->full[f].store(bits, std::memory_order_release);
		}
		c->count.store(count, std::memory_order_relaxed);
		c->needs_audit.store(0, std::memory_order_release);
	}
	for (uint32_t i = h->lock_mask + 1; i-- > 0;)
		h->locks[i].unlock();
}

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
	if (h->is_lru && !lru_unlinked.empty()) {
		for (uint32_t idx : lru_unlinked)
			lru_push_free(&h->lru, idx);
		lru_unlinked.clear();
	}
	return ret;
}

// bucket_find() under the bucket lock: what the bucket holds now, decided by a bounded walk.
htab_elem *bucket_find_locked(bpf_htab *h, uint32_t b, uint64_t hash, const void *key, void *out)
{
	htab_elem *found = nullptr;
	with_bucket_locked(h, b, [&](bucket *bk) {
		position p = locked_find(h, bk, hash, key);
		if (p.e && out)
			copy_from_shared(out, h->elem_value(p.e), h->uvalue_size);
		found = p.e;
		return 0;
	});
	return found;
}

int htab_update(bpf_htab *h, const void *key, value_src value, uint64_t flags)
{
	int err = check_update_flags(flags);
	if (err)
		return err;
	uint64_t hash = hash_key(key, h->key_size, h->seed);
	if (h->n_groups)
		prefetch_homes<1>(h, hash);
	return with_bucket_locked(h, static_cast<uint32_t>(hash) & h->bucket_mask, [&](bucket *bk) {
		return update_locked(h, bk, hash, key, value, flags);
	});
}

int htab_map_update_elem(bpf_map *map, const void *key, const void *value, uint64_t flags)
{
	return htab_update(htab_of(map), key, {value}, flags);
}

// Program side: the value of the CPU the caller runs on.
int htab_percpu_map_update_elem(bpf_map *map, const void *key, const void *value, uint64_t flags)
{
	return htab_update(htab_of(map), key,
			   {value, static_cast<int>(this_cpu_slot(htab_of(map)->nr_cpus))}, flags);
}

// Take the element at p out of its bucket and give it back to the pool (or the LRU, once
// the bucket is unlocked).
void remove_at(bpf_htab *h, bucket *bk, const position &p)
{
	unlink_at(bk, p);
	retire(p.e);
	if (h->is_lru)
		lru_unlinked.push_back(h->index_of(p.e));
	else
		pool_push(h, p.e);
	h->ctl_->count.fetch_sub(1, std::memory_order_relaxed);
}

// Remove key under the bucket lock; copy its value first if value is not null.
int htab_remove(bpf_htab *h, const void *key, void *value)
{
	uint64_t hash = hash_key(key, h->key_size, h->seed);
	return with_bucket_locked(h, static_cast<uint32_t>(hash) & h->bucket_mask, [&](bucket *bk) {
		position p = locked_find(h, bk, hash, key);
		if (p.err)
			return p.err;
		if (!p.e)
			return -ENOENT;
		if (value)
			copy_from_shared(value, h->elem_value(p.e), h->uvalue_size);
		remove_at(h, bk, p);
		return 0;
	});
}

int htab_map_delete_elem(bpf_map *map, const void *key)
{
	return htab_remove(htab_of(map), key, nullptr);
}

int htab_map_lookup_and_delete_elem(bpf_map *map, const void *key, void *value, uint64_t flags)
{
	if (flags & ~uapi::BPF_F_LOCK)
		return -EINVAL;
	if (flags & uapi::BPF_F_LOCK)
		return -EINVAL; // no bpf_spin_lock in values yet
	return htab_remove(htab_of(map), key, value);
}

// ---- LRU -------------------------------------------------------------------------------
//
// LRU_HASH and LRU_PERCPU_HASH, as the kernel's htab_lru_* functions: elements come from
// the LRU (core/lru_list.h), which may evict to supply one, and that happens before the
// bucket lock is taken. Syscall lookups leave reference bits alone; the pointer lookups a
// program makes set them.

// Where element e sits in its (locked) bucket, found by identity; p.e is null if it is not
// linked there.
position locate(bpf_htab *h, bucket *bk, htab_elem *e)
{
	uint32_t idx = h->index_of(e);
	uint64_t w[2] = {bk->tagw[0].load(std::memory_order_relaxed),
			 bk->tagw[1].load(std::memory_order_relaxed)};
	for (uint32_t i = 0; i < SLOTS; i++)
		if (tag_at(w, i) && bk->slot[i].load(std::memory_order_relaxed) == idx)
			return {e, static_cast<int>(i), nullptr};
	htab_elem *prev = nullptr;
	for (uint32_t x = chain_head(bk), steps = 0; !(x & NULLS_BIT) && x < h->n_elems && steps < h->n_elems;
	     steps++) {
		if (x == idx)
			return {e, -1, prev};
		prev = h->elem(x);
		x = prev->next.load(std::memory_order_relaxed);
	}
	return {};
}

// The LRU evicts element idx: unlink it if it is still in the table. LRU locks are held,
// so the bucket lock is taken directly; an audit a dead holder calls for waits for the
// next writer that takes the lock the ordinary way.
bool htab_lru_delete_node(void *arg, uint32_t idx)
{
	bpf_htab *h = static_cast<bpf_htab *>(arg);
	if (!h->idx_ok(idx))
		return false;
	htab_elem *e = h->elem(idx);
	uint32_t b = e->hash.load(std::memory_order_relaxed) & h->bucket_mask;
	bucket *bk = &h->buckets[b];
	lock_guard g(h->locks[b & h->lock_mask]);
	if (g.owner_died())
		h->ctl_->needs_audit.store(1, std::memory_order_relaxed);
	position p = locate(h, bk, e);
	if (!p.e)
		return false;
	unlink_at(bk, p);
	retire(e);
	h->ctl_->count.fetch_sub(1, std::memory_order_relaxed);
	return true;
}

void lru_give_back(bpf_htab *h, uint32_t idx)
{
	h->ctl_->count.fetch_sub(1, std::memory_order_relaxed);
	lru_push_free(&h->lru, idx);
}

int htab_lru_update(bpf_htab *h, const void *key, value_src value, uint64_t flags)
{
	if (flags > uapi::BPF_EXIST)
		return -EINVAL;
	uint64_t hash = hash_key(key, h->key_size, h->seed);
	// A per-CPU value of a key that exists is rewritten in place: BPF_EXIST takes no node.
	uint32_t fresh = LRU_NIL, old = LRU_NIL;
	if (!h->percpu || flags != uapi::BPF_EXIST) {
		fresh = lru_pop_free(&h->lru);
		if (fresh == LRU_NIL)
			return -ENOMEM;
		if (!h->idx_ok(fresh))
			return -EFAULT; // the LRU's lists are corrupt
		h->ctl_->count.fetch_add(1, std::memory_order_relaxed);
	}
	// The new element is filled only once the flags allow the update (the kernel fills it
	// before): a reader that still holds it from before it was evicted must never see the
	// value of an update that then fails.
	int err = with_bucket_locked(h, static_cast<uint32_t>(hash) & h->bucket_mask, [&](bucket *bk) {
		position p = locked_find(h, bk, hash, key);
		if (p.err)
			return p.err;
		if (p.e && flags == uapi::BPF_NOEXIST)
			return -EEXIST;
		if (!p.e && flags == uapi::BPF_EXIST)
			return -ENOENT;
		if (p.e && h->percpu) {
			mark_referenced(p.e);
			elem_rewrite(h, p.e, value);
			return 0;
		}
		if (p.e == h->elem(fresh))
			return -EFAULT; // the LRU handed out a linked element
		htab_elem *e = elem_fill(h, h->elem(fresh), hash, key, value);
		if (p.e) {
			// The replacement was just used: it starts referenced.
			mark_referenced(e);
			replace_at(h, bk, p, e);
			retire(p.e);
			old = h->index_of(p.e);
		} else {
			insert_new(h, bk, hash, e);
		}
		fresh = LRU_NIL;
		return 0;
	});
	if (fresh != LRU_NIL)
		lru_give_back(h, fresh);
	if (old != LRU_NIL)
		lru_give_back(h, old);
	return err;
}

int htab_lru_map_update_elem(bpf_map *map, const void *key, const void *value, uint64_t flags)
{
	return htab_lru_update(htab_of(map), key, {value}, flags);
}

int htab_lru_percpu_map_update_elem(bpf_map *map, const void *key, const void *value, uint64_t flags)
{
	return htab_lru_update(htab_of(map), key,
			       {value, static_cast<int>(this_cpu_slot(htab_of(map)->nr_cpus))}, flags);
}

htab_elem *lru_find_ref(bpf_htab *h, const void *key)
{
	htab_elem *e = htab_find(h, key, nullptr);
	if (e)
		mark_referenced(e);
	return e;
}

void *htab_lru_map_lookup_elem(bpf_map *map, const void *key)
{
	bpf_htab *h = htab_of(map);
	htab_elem *e = lru_find_ref(h, key);
	return e ? h->elem_value(e) : nullptr;
}

void *htab_lru_percpu_map_lookup_percpu_elem(bpf_map *map, const void *key, uint32_t slot)
{
	bpf_htab *h = htab_of(map);
	htab_elem *e = lru_find_ref(h, key);
	return e ? h->elem_value(e) + static_cast<size_t>(slot) * h->pcpu_size : nullptr;
}

void *htab_lru_percpu_map_lookup_elem(bpf_map *map, const void *key)
{
	return htab_lru_percpu_map_lookup_percpu_elem(map, key, this_cpu_slot(htab_of(map)->nr_cpus));
}

// ---- iteration -----------------------------------------------------------------------

// Copy e's key into out if e still holds a key of this bucket; false if it was reused.
bool copy_key_stable(bpf_htab *h, htab_elem *e, void *out)
{
	uint32_t s = e->seq.load(std::memory_order_acquire);
	if (s & 1)
		return false;
	copy_from_shared(out, h->elem_key(e), h->key_size);
	std::atomic_thread_fence(std::memory_order_acquire);
	return e->seq.load(std::memory_order_relaxed) == s;
}

// Of bucket b, under its lock: the first key from slot `from` on, or, when `after` is not
// null, the key after that chain element (after the chain's head if it left the chain).
int bucket_next_key_locked(bpf_htab *h, uint32_t b, uint32_t from, htab_elem *after, void *next_key)
{
	return with_bucket_locked(h, b, [&](bucket *bk) {
		uint64_t w[2] = {bk->tagw[0].load(std::memory_order_relaxed),
				 bk->tagw[1].load(std::memory_order_relaxed)};
		uint32_t idx = static_cast<uint32_t>(w[1] >> 32);
		if (after) {
			position p = locate(h, bk, after);
			if (p.e && p.slot < 0)
				idx = after->next.load(std::memory_order_relaxed);
		} else {
			for (uint32_t i = from; i < SLOTS; i++) {
				uint32_t x = bk->slot[i].load(std::memory_order_relaxed);
				if (!tag_at(w, i) || !h->idx_ok(x))
					continue;
				copy_from_shared(next_key, h->elem_key(h->elem(x)), h->key_size);
				return 0;
			}
		}
		if ((idx & NULLS_BIT) || !h->idx_ok(idx))
			return -ENOENT;
		copy_from_shared(next_key, h->elem_key(h->elem(idx)), h->key_size);
		return 0;
	});
}

// The first key at or after (bucket b, slot `from`), in bucket order: slots, then chain.
// `after` (when not null) is a chain element whose successors are the place to start. A
// bucket whose elements keep changing under the lock-free reads is read under its lock.
int first_key_from(bpf_htab *h, uint32_t b, uint32_t from, htab_elem *after, void *next_key)
{
	for (; b <= h->bucket_mask; b++, from = 0, after = nullptr) {
		bucket *bk = &h->buckets[b];
		uint32_t tries = 0;
	again:
		if (++tries > READ_RESTARTS) {
			int err = bucket_next_key_locked(h, b, from, after, next_key);
			if (err != -ENOENT)
				return err;
			continue;
		}
		uint64_t w[2] = {bk->tagw[0].load(std::memory_order_acquire),
				 bk->tagw[1].load(std::memory_order_acquire)};
		uint32_t idx;
		if (!after) {
			for (uint32_t i = from; i < SLOTS; i++) {
				if (!tag_at(w, i))
					continue;
				uint32_t x = bk->slot[i].load(std::memory_order_acquire);
				if (!h->idx_ok(x))
					continue; // vacant (being unlinked) or corrupt: no key there
				if (!copy_key_stable(h, h->elem(x), next_key))
					goto again;
				return 0;
			}
			idx = static_cast<uint32_t>(w[1] >> 32);
		} else {
			idx = after->next.load(std::memory_order_acquire);
		}
		if (!(idx & NULLS_BIT) && h->idx_ok(idx)) {
			if (copy_key_stable(h, h->elem(idx), next_key))
				return 0;
			after = nullptr; // our place in the chain is gone: finish the bucket's slots
			from = SLOTS;
			goto again;
		}
	}
	return -ENOENT;
}

int htab_map_get_next_key(bpf_map *map, const void *key, void *next_key)
{
	bpf_htab *h = htab_of(map);
	if (!key)
		return first_key_from(h, 0, 0, nullptr, next_key);
	uint64_t hash = hash_key(key, h->key_size, h->seed);
	uint32_t b = static_cast<uint32_t>(hash) & h->bucket_mask;
	bucket *bk = &h->buckets[b];
	uint64_t w[2] = {bk->tagw[0].load(std::memory_order_acquire),
			 bk->tagw[1].load(std::memory_order_acquire)};
	int slot = find_slot(w, tag_of(hash), [&](uint32_t i) {
		uint32_t idx = bk->slot[i].load(std::memory_order_acquire);
		return h->idx_ok(idx) && elem_matches(h, h->elem(idx), hash, key);
	});
	if (slot >= 0)
		return first_key_from(h, b, static_cast<uint32_t>(slot) + 1, nullptr, next_key);
	htab_elem *e = bucket_find(h, b, hash, key, nullptr);
	if (e)
		return first_key_from(h, b, SLOTS, e, next_key);
	// A key that is not in the map restarts the walk, as in the kernel.
	return first_key_from(h, 0, 0, nullptr, next_key);
}

// ---- batch walk ----------------------------------------------------------------------
//
// The kernel's batch cursor is a bucket index and a batch returns whole buckets, with
// roundup_pow2(max_entries) buckets, so about one element each. Our buckets hold several
// keys, so the walk splits each into "virtual buckets" that match the kernel's granularity:
// virtual bucket t covers bucket t / R and the next log2(R) hash bits, where R is the
// number of virtual buckets per bucket. The cursor is stable under concurrent deletes,
// ENOSPC means what it means in the kernel (the next virtual bucket holds more elements
// than the caller has room for), and an in_batch token past the end is ENOENT as there.

struct vbucket_geometry {
	uint32_t n_virtual;  // roundup_pow2(max_entries), the kernel's bucket count
	uint32_t per_bucket; // R, a power of two
	uint32_t bucket_bits;
};

vbucket_geometry vbuckets(const bpf_htab *h)
{
	vbucket_geometry g;
	g.n_virtual = roundup_pow2(h->max_entries);
	g.per_bucket = g.n_virtual / (h->bucket_mask + 1);
	g.bucket_bits = static_cast<uint32_t>(__builtin_ctz(h->bucket_mask + 1));
	return g;
}

// Which of its bucket's virtual buckets an element falls in.
uint32_t sub_of(const vbucket_geometry &g, const htab_elem *e)
{
	return (e->hash.load(std::memory_order_relaxed) >> g.bucket_bits) & (g.per_bucket - 1);
}

bool bucket_looks_empty(bucket *bk)
{
	return bk->tagw[0].load(std::memory_order_acquire) == 0 &&
	       (bk->tagw[1].load(std::memory_order_acquire) & 0xffffffffull) == 0 &&
	       (chain_head(bk) & NULLS_BIT);
}

struct batch_elem {
	htab_elem *e;
	uint32_t sub; // virtual bucket within the bucket
};

// The elements of a locked bucket in bucket order (slots, then chain); -EFAULT if a slot
// or link names no element or the chain is longer than the pool.
int bucket_elems(bpf_htab *h, bucket *bk, const vbucket_geometry &g, std::vector<batch_elem> *out)
{
	out->clear();
	auto add = [&](htab_elem *e) { out->push_back({e, sub_of(g, e)}); };
	uint64_t w[2] = {bk->tagw[0].load(std::memory_order_relaxed),
			 bk->tagw[1].load(std::memory_order_relaxed)};
	for (uint32_t i = 0; i < SLOTS; i++) {
		if (!tag_at(w, i))
			continue;
		uint32_t idx = bk->slot[i].load(std::memory_order_relaxed);
		if (!h->idx_ok(idx))
			return -EFAULT;
		add(h->elem(idx));
	}
	uint32_t idx = static_cast<uint32_t>(w[1] >> 32);
	for (uint32_t steps = 0; !(idx & NULLS_BIT); steps++) {
		if (!h->idx_ok(idx) || steps >= h->n_elems)
			return -EFAULT;
		add(h->elem(idx));
		idx = h->elem(idx)->next.load(std::memory_order_relaxed);
	}
	return 0;
}

// Unlink and free every element of a locked bucket for which doomed(e) holds. The bucket
// was read whole by bucket_elems() under the same lock, but the region may have changed
// since: it stops at anything that names no element.
template <typename F> void bucket_remove_if(bpf_htab *h, bucket *bk, F &&doomed)
{
	uint64_t w[2] = {bk->tagw[0].load(std::memory_order_relaxed),
			 bk->tagw[1].load(std::memory_order_relaxed)};
	for (uint32_t i = 0; i < SLOTS; i++) {
		if (!tag_at(w, i))
			continue;
		uint32_t idx = bk->slot[i].load(std::memory_order_relaxed);
		if (!h->idx_ok(idx))
			continue;
		htab_elem *e = h->elem(idx);
		if (doomed(e))
			remove_at(h, bk, position{e, static_cast<int>(i), nullptr});
	}
	htab_elem *prev = nullptr;
	uint32_t idx = chain_head(bk);
	for (uint32_t steps = 0; !(idx & NULLS_BIT) && h->idx_ok(idx) && steps < h->n_elems; steps++) {
		htab_elem *e = h->elem(idx);
		idx = e->next.load(std::memory_order_relaxed);
		if (doomed(e)) {
			remove_at(h, bk, position{e, -1, prev});
		} else {
			prev = e;
		}
	}
}

// Of a bucket's elements in walk order, sorted by virtual bucket: the run [*begin, *end) of
// whole virtual buckets from `first` on that fits in room elements. Returns the first
// virtual bucket not taken; *full says one did not fit.
template <typename Sub>
uint32_t pick_vbuckets(size_t n, Sub &&sub, uint32_t first, uint32_t room,
		       const vbucket_geometry &g, size_t *begin, size_t *end, bool *full)
{
	size_t i = 0;
	while (i < n && sub(i) < first)
		i++;
	*begin = i;
	while (i < n) {
		size_t j = i;
		while (j < n && sub(j) == sub(i))
			j++;
		if (j - *begin > room) {
			*full = true;
			*end = i;
			return sub(i);
		}
		i = j;
	}
	*end = n;
	return g.per_bucket;
}

// A handful of elements: an insertion sort by virtual bucket, stable, without allocating.
template <typename T> void sort_by_sub(T *a, size_t n)
{
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && a[j - 1].sub > a[j].sub; j--)
			std::swap(a[j - 1], a[j]);
}

// Bytes copied out of one bucket; grows without clearing what it will overwrite anyway.
struct batch_buf {
	std::vector<unsigned char> bytes;
	size_t used = 0;
	unsigned char *take(size_t n)
	{
		if (used + n > bytes.size())
			bytes.resize(std::max(2 * bytes.size(), used + n));
		unsigned char *p = bytes.data() + used;
		used += n;
		return p;
	}
};

// Under bucket b's lock: copy out whole virtual buckets from *cursor on while they fit in
// room elements, deleting them if asked. Advances *cursor past what it copied and returns
// how many elements it copied, or -EFAULT for a corrupt bucket; *full says it stopped at
// a virtual bucket that did not fit.
int batch_bucket(bpf_htab *h, bucket *bk, const vbucket_geometry &g, uint32_t *cursor,
		 uint32_t room, bool do_delete, std::vector<batch_elem> &elems, batch_buf *keys,
		 batch_buf *values, bool *full)
{
	if (int err = bucket_elems(h, bk, g, &elems))
		return err;
	sort_by_sub(elems.data(), elems.size());
	const uint32_t ks = h->key_size, vs = h->uvalue_size;
	uint32_t first = *cursor & (g.per_bucket - 1);
	size_t begin, end;
	uint32_t stop = pick_vbuckets(elems.size(), [&](size_t i) { return elems[i].sub; }, first,
				      room, g, &begin, &end, full);
	for (size_t i = begin; i < end; i++) {
		copy_from_shared(keys->take(ks), h->elem_key(elems[i].e), ks);
		copy_from_shared(values->take(vs), h->elem_value(elems[i].e), vs);
	}
	if (do_delete && end > begin) {
		bucket_remove_if(h, bk, [&](htab_elem *e) {
			uint32_t sub = sub_of(g, e);
			return sub >= first && sub < stop;
		});
	}
	*cursor = (*cursor & ~(g.per_bucket - 1)) + stop;
	return static_cast<int>(end - begin);
}

constexpr int SNAPSHOT_TRIES = 8;
constexpr uint32_t PREFETCH_AHEAD = 4; // buckets

// Start loading the elements of bucket b (if it exists) into cache: a batch walks buckets
// in order, but their elements lie anywhere in the pool.
void prefetch_bucket_elems(bpf_htab *h, uint32_t b)
{
	if (b > h->bucket_mask)
		return;
	bucket *bk = &h->buckets[b];
	uint64_t w[2] = {bk->tagw[0].load(std::memory_order_relaxed),
			 bk->tagw[1].load(std::memory_order_relaxed)};
	for (uint32_t i = 0; i < SLOTS; i++) {
		uint32_t idx = bk->slot[i].load(std::memory_order_relaxed);
		if (tag_at(w, i) && h->idx_ok(idx))
			__builtin_prefetch(h->elem(idx));
	}
}

struct slot_snap {
	htab_elem *e;
	uint32_t slot, idx, seq, sub;
};

// What batch_bucket() copies, read without the lock and straight into the caller's buffers
// (keys and values, room for room elements): the bucket's slots and their elements are
// read, copied, and read again, and the copy counts only if nothing changed meanwhile, so
// it is the bucket as it stood at one instant. False when the bucket has an overflow chain
// or kept changing: the caller takes the lock instead. Bytes past what it reports copied
// may have been written.
bool batch_bucket_snapshot(bpf_htab *h, bucket *bk, const vbucket_geometry &g, uint32_t *cursor,
			   uint32_t room, unsigned char *keys, unsigned char *values,
			   uint32_t *copied, bool *full)
{
	const uint32_t ks = h->key_size, vs = h->uvalue_size;
	const uint32_t first = *cursor & (g.per_bucket - 1);
	for (int tries = 0; tries < SNAPSHOT_TRIES; tries++) {
		uint64_t w[2] = {bk->tagw[0].load(std::memory_order_acquire),
				 bk->tagw[1].load(std::memory_order_acquire)};
		if (!(static_cast<uint32_t>(w[1] >> 32) & NULLS_BIT))
			return false;
		slot_snap snap[SLOTS];
		size_t n = 0;
		bool busy = false;
		for (uint32_t i = 0; i < SLOTS && !busy; i++) {
			if (!tag_at(w, i))
				continue;
			uint32_t idx = bk->slot[i].load(std::memory_order_acquire);
			if (!h->idx_ok(idx))
				return false; // being unlinked, or corrupt: the locked walk decides
			htab_elem *e = h->elem(idx);
			uint32_t seq = e->seq.load(std::memory_order_acquire);
			busy = seq & 1;
			snap[n++] = {e, i, idx, seq, sub_of(g, e)};
		}
		if (busy)
			continue;
		// Usually the rest of the bucket fits: then the order of its elements does not
		// matter and it is copied as found. Otherwise whole virtual buckets, in order.
		size_t rest = 0;
		for (size_t i = 0; i < n; i++)
			rest += snap[i].sub >= first;
		size_t begin = 0, end = n;
		bool over = false;
		uint32_t stop = g.per_bucket;
		if (rest > room) {
			sort_by_sub(snap, n);
			stop = pick_vbuckets(n, [&](size_t i) { return snap[i].sub; }, first, room, g,
					     &begin, &end, &over);
		}
		size_t out = 0;
		for (size_t i = begin; i < end; i++) {
			if (snap[i].sub < first)
				continue;
			copy_from_shared(keys + out * ks, h->elem_key(snap[i].e), ks);
			copy_from_shared(values + out * vs, h->elem_value(snap[i].e), vs);
			out++;
		}
		std::atomic_thread_fence(std::memory_order_acquire);
		bool same = bk->tagw[0].load(std::memory_order_relaxed) == w[0] &&
			    bk->tagw[1].load(std::memory_order_relaxed) == w[1];
		for (size_t i = 0; i < n && same; i++)
			same = bk->slot[snap[i].slot].load(std::memory_order_relaxed) == snap[i].idx &&
			       snap[i].e->seq.load(std::memory_order_relaxed) == snap[i].seq;
		if (!same)
			continue;
		*full = over;
		*copied = static_cast<uint32_t>(out);
		*cursor = (*cursor & ~(g.per_bucket - 1)) + stop;
		return true;
	}
	return false;
}

int htab_batch(bpf_map *map, const uapi::batch_attr &attr, uapi::batch_attr *uattr,
	       bool do_delete)
{
	bpf_htab *h = htab_of(map);
	int err = batch_check_elem_flags(attr.elem_flags);
	if (err)
		return err;
	if (attr.flags)
		return -EINVAL;
	if (!attr.count)
		return 0;
	uattr->count = 0;
	uint32_t cursor = 0;
	if (attr.in_batch && (err = copy_from_user(&cursor, attr.in_batch, sizeof(cursor))))
		return err;
	const vbucket_geometry g = vbuckets(h);
	if (cursor >= g.n_virtual)
		return -ENOENT;
	const uint32_t ks = h->key_size, vs = h->uvalue_size;
	// A lookup whose buffers are not in the first page reads buckets without their locks,
	// straight into the buffers (see batch_bucket_snapshot).
	auto *ukeys = static_cast<unsigned char *>(user_ptr(attr.keys));
	auto *uvalues = static_cast<unsigned char *>(user_ptr(attr.values));
	const bool lockless = !do_delete && !bad_user_ptr(ukeys) && !bad_user_ptr(uvalues);
	batch_buf keys, values;
	std::vector<batch_elem> scratch;
	uint32_t total = 0;
	int ret = 0;
	for (;;) {
		uint32_t b = cursor >> __builtin_ctz(g.per_bucket);
		bucket *bk = &h->buckets[b];
		bool full = false;
		uint32_t n = 0;
		if (lockless)
			prefetch_bucket_elems(h, b + PREFETCH_AHEAD);
		if (bucket_looks_empty(bk)) {
			cursor = (b + 1) * g.per_bucket;
		} else if (!lockless || !batch_bucket_snapshot(h, bk, g, &cursor, attr.count - total,
							       ukeys + uint64_t(total) * ks,
							       uvalues + uint64_t(total) * vs, &n, &full)) {
			keys.used = values.used = 0;
			int got = with_bucket_locked(h, b, [&](bucket *locked) {
				return batch_bucket(h, locked, g, &cursor, attr.count - total,
						    do_delete, scratch, &keys, &values, &full);
			});
			if (got < 0) {
				ret = got; // a corrupt bucket: report what came before it
				break;
			}
			n = static_cast<uint32_t>(got);
			if (n && ((err = copy_to_user(attr.keys + uint64_t(total) * ks, keys.bytes.data(),
						      n * ks)) ||
				  (err = copy_to_user(attr.values + uint64_t(total) * vs,
						      values.bytes.data(), n * vs))))
				return err; // as in the kernel: count stays 0 though elements may be gone
		}
		total += n;
		if (full) {
			if (!total)
				ret = -ENOSPC;
			break;
		}
		if (cursor >= g.n_virtual) {
			ret = -ENOENT;
			break;
		}
	}
	if ((err = copy_to_user(attr.out_batch, &cursor, sizeof(cursor))))
		return err;
	uattr->count = total;
	return ret;
}

int htab_map_lookup_batch(bpf_map *map, const uapi::batch_attr &attr, uapi::batch_attr *uattr)
{
	return htab_batch(map, attr, uattr, false);
}

int htab_map_lookup_and_delete_batch(bpf_map *map, const uapi::batch_attr &attr,
				     uapi::batch_attr *uattr)
{
	return htab_batch(map, attr, uattr, true);
}

// ---- creation ------------------------------------------------------------------------

struct htab_geometry {
	uint32_t max_entries, n_buckets, n_locks, n_elems, elem_size, n_groups, group_elems;
	uint64_t locks_off, buckets_off, elems_off, used_off, full_off, lru_off, size;
};

bool is_percpu(uint32_t map_type)
{
	return map_type == uapi::MAP_TYPE_PERCPU_HASH || map_type == uapi::MAP_TYPE_LRU_PERCPU_HASH;
}

bool is_lru(uint32_t map_type)
{
	return map_type == uapi::MAP_TYPE_LRU_HASH || map_type == uapi::MAP_TYPE_LRU_PERCPU_HASH;
}

// A per-CPU LRU gives every CPU the same number of elements: max_entries rounded up to a
// multiple of the CPUs, or down when rounding up would overflow, as the kernel does.
uint32_t effective_max_entries(const uapi::map_create_attr &attr, uint32_t nr_cpus)
{
	if (!(attr.map_flags & uapi::BPF_F_NO_COMMON_LRU))
		return attr.max_entries;
	uint64_t up = (static_cast<uint64_t>(attr.max_entries) + nr_cpus - 1) / nr_cpus * nr_cpus;
	return up <= UINT32_MAX ? static_cast<uint32_t>(up) : attr.max_entries / nr_cpus * nr_cpus;
}

// nr_cpus: the possible CPUs (value slots of a per-CPU map, lists of a per-CPU LRU).
htab_geometry geometry(const uapi::map_create_attr &attr, uint32_t nr_cpus)
{
	htab_geometry g;
	bool percpu = is_percpu(attr.map_type), lru = is_lru(attr.map_type);
	g.max_entries = effective_max_entries(attr, nr_cpus);
	g.n_buckets = roundup_pow2((static_cast<uint64_t>(g.max_entries) + KEYS_PER_BUCKET - 1) /
				   KEYS_PER_BUCKET);
	g.n_locks = g.n_buckets < MAX_LOCKS ? g.n_buckets : MAX_LOCKS;
	// Spares let a full map replace a key; per-CPU values are rewritten in place instead,
	// and an LRU map evicts.
	g.n_elems = g.max_entries + (percpu || lru ? 0 : g.n_locks);
	g.elem_size = static_cast<uint32_t>(sizeof(htab_elem) + round_up(attr.key_size, 8) +
					    round_up(attr.value_size, 8) * (percpu ? nr_cpus : 1));
	// Homes: a group is the elements of one cache line when two or more fit, else one.
	g.n_groups = g.group_elems = 0;
	if (!percpu && !lru && !(attr.map_flags & uapi::BPF_F_NO_PREALLOC)) {
		g.group_elems = g.elem_size <= 32 ? 64 / g.elem_size : 1;
		g.n_groups = (g.n_elems + g.max_entries / 2) / g.group_elems;
		g.n_elems = g.n_groups * g.group_elems;
	}
	g.locks_off = 0;
	g.buckets_off = round_up(g.n_locks * sizeof(shared_lock), 64);
	g.elems_off = g.buckets_off + static_cast<uint64_t>(g.n_buckets) * sizeof(bucket);
	g.size = g.elems_off + static_cast<uint64_t>(g.n_elems) * g.elem_size;
	g.used_off = round_up(g.size, 64);
	g.full_off = g.used_off + static_cast<uint64_t>(used_words(g.n_elems)) * 8;
	if (!lru)
		g.size = g.full_off + static_cast<uint64_t>(used_words(used_words(g.n_elems))) * 8;
	g.lru_off = 0;
	if (lru) {
		g.lru_off = round_up(g.size, 64);
		g.size = g.lru_off + lru_size(g.n_elems, nr_cpus, attr.map_flags & uapi::BPF_F_NO_COMMON_LRU);
	}
	return g;
}

int htab_map_alloc_check(const uapi::map_create_attr &attr)
{
	if (attr.map_flags & ~HTAB_CREATE_FLAG_MASK)
		return -EINVAL;
	bool percpu = is_percpu(attr.map_type), lru = is_lru(attr.map_type);
	bool percpu_lru = attr.map_flags & uapi::BPF_F_NO_COMMON_LRU;
	if (!lru && percpu_lru)
		return -EINVAL;
	if (lru && (attr.map_flags & uapi::BPF_F_NO_PREALLOC))
		return -uapi::ENOTSUPP; // an LRU's elements are its nodes: always preallocated
	if ((percpu || percpu_lru) && map_attr_numa_node(attr) != NUMA_NO_NODE)
		return -EINVAL;
	if (attr.max_entries == 0 || attr.key_size == 0 || attr.value_size == 0)
		return -EINVAL;
	if (static_cast<uint64_t>(attr.key_size) + attr.value_size >= MAX_KEY_VALUE_SIZE)
		return -E2BIG;
	if (percpu && round_up(attr.value_size, 8) > PCPU_MIN_UNIT_SIZE)
		return -E2BIG;
	return 0;
}

int htab_map_mem_size(const uapi::map_create_attr &attr, size_t *size)
{
	if (attr.max_entries > MAX_ENTRIES)
		return -E2BIG;
	*size = geometry(attr, num_possible_cpus()).size;
	return 0;
}

bpf_map *htab_map_alloc() { return new bpf_htab; }

// The create attr a map's handle stands for (max_entries as the map has it).
uapi::map_create_attr attr_of(const bpf_map *map)
{
	uapi::map_create_attr attr{};
	attr.map_type = map->map_type;
	attr.key_size = map->key_size;
	attr.value_size = map->value_size;
	attr.max_entries = map->max_entries;
	attr.map_flags = map->map_flags;
	return attr;
}

// Whether the region's control block says what map_init() wrote for this geometry. Each
// word is read once; nothing read here is used afterwards (the seed excepted, which may be
// anything).
bool ctl_matches(const htab_ctl *c, const htab_geometry &g)
{
	return c->locks_off == g.locks_off && c->buckets_off == g.buckets_off &&
	       c->elems_off == g.elems_off && c->n_buckets == g.n_buckets &&
	       c->n_locks == g.n_locks && c->n_elems == g.n_elems && c->elem_size == g.elem_size &&
	       c->lru_off == g.lru_off && c->used_off == g.used_off && c->full_off == g.full_off &&
	       c->n_groups == g.n_groups && c->group_elems == g.group_elems;
}

// The layout comes from the validated header, recomputed here; the control block must
// agree with it, but only its seed and its two atomic words are used.
int htab_map_attach(bpf_map *map)
{
	bpf_htab *h = htab_of(map);
	htab_ctl *c = map->ctl<htab_ctl>();
	htab_geometry g = geometry(attr_of(map), map->nr_cpus);
	if (g.max_entries != map->max_entries || g.size > map->region_size - MAP_HEADER_SIZE ||
	    !ctl_matches(c, g))
		return -EINVAL;
	h->ctl_ = c;
	h->locks = reinterpret_cast<shared_lock *>(map->data + g.locks_off);
	h->buckets = reinterpret_cast<bucket *>(map->data + g.buckets_off);
	h->elems = map->data + g.elems_off;
	h->used = reinterpret_cast<std::atomic<uint64_t> *>(map->data + g.used_off);
	h->full = reinterpret_cast<std::atomic<uint64_t> *>(map->data + g.full_off);
	h->n_used_words = is_lru(map->map_type) ? 0 : used_words(g.n_elems);
	h->n_full_words = used_words(h->n_used_words);
	h->n_groups = g.n_groups;
	h->group_elems = g.group_elems;
	h->group_bytes = g.group_elems * g.elem_size;
	h->home_tail = h->group_bytes ? std::min<uint32_t>(h->group_bytes, 128) - 1 : 0;
	h->seed = c->seed;
	h->bucket_mask = g.n_buckets - 1;
	h->lock_mask = g.n_locks - 1;
	h->n_elems = g.n_elems;
	h->elem_size = g.elem_size;
	h->key_off_value = static_cast<uint32_t>(sizeof(htab_elem) + round_up(map->key_size, 8));
	h->percpu = is_percpu(map->map_type);
	h->pcpu_size = static_cast<uint32_t>(round_up(map->value_size, 8));
	h->nr_cpus = map->nr_cpus;
	if (h->percpu)
		map->uvalue_size = h->pcpu_size * h->nr_cpus;
	h->is_lru = is_lru(map->map_type);
	if (h->is_lru)
		lru_attach(&h->lru, map->data + g.lru_off, h->n_elems, h->nr_cpus,
			   map->map_flags & uapi::BPF_F_NO_COMMON_LRU,
			   h->elems + offsetof(htab_elem, lru_ref), h->elem_size,
			   htab_lru_delete_node, h);
	return 0;
}

void htab_map_init(bpf_map *map)
{
	htab_geometry g = geometry(attr_of(map), map->nr_cpus);
	map->hdr->max_entries = map->max_entries = g.max_entries;
	htab_ctl *c = map->ctl<htab_ctl>();
	c->seed = (map->map_flags & uapi::BPF_F_ZERO_SEED)
			  ? 0
			  : (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
	c->locks_off = g.locks_off;
	c->buckets_off = g.buckets_off;
	c->elems_off = g.elems_off;
	c->n_buckets = g.n_buckets;
	c->n_locks = g.n_locks;
	c->n_elems = g.n_elems;
	c->elem_size = g.elem_size;
	c->used_off = g.used_off;
	c->full_off = g.full_off;
	c->n_groups = g.n_groups;
	c->group_elems = g.group_elems;
	if (!is_lru(map->map_type)) {
		// The data area starts zeroed: only the last word of each level has bits past its end.
		auto *used = reinterpret_cast<std::atomic<uint64_t> *>(map->data + g.used_off);
		auto *full = reinterpret_cast<std::atomic<uint64_t> *>(map->data + g.full_off);
		uint32_t n_words = used_words(g.n_elems), n_full = used_words(n_words);
		used[n_words - 1].store(bits_past_end(n_words - 1, g.n_elems), std::memory_order_relaxed);
		full[n_full - 1].store(bits_past_end(n_full - 1, n_words), std::memory_order_relaxed);
	}
	auto *locks = reinterpret_cast<shared_lock *>(map->data + g.locks_off);
	for (uint32_t i = 0; i < g.n_locks; i++)
		locks[i].init();
	auto *buckets = reinterpret_cast<bucket *>(map->data + g.buckets_off);
	for (uint32_t b = 0; b < g.n_buckets; b++)
		set_chain_head(&buckets[b], NULLS_BIT | b);
	c->lru_off = g.lru_off;
	if (is_lru(map->map_type))
		lru_init(map->data + g.lru_off, g.n_elems, map->nr_cpus,
			 map->map_flags & uapi::BPF_F_NO_COMMON_LRU);
}

} // namespace

const bpf_map_ops htab_map_ops = {
	.map_alloc_check = htab_map_alloc_check,
	.map_mem_size = htab_map_mem_size,
	.map_alloc = htab_map_alloc,
	.map_init = htab_map_init,
	.map_attach = htab_map_attach,
	.map_lookup_elem = htab_map_lookup_elem,
	.map_lookup_percpu_elem = nullptr,
	.map_copy_value = htab_map_copy_value,
	.map_update_elem = htab_map_update_elem,
	.map_update_value = htab_map_update_elem,
	.map_delete_elem = htab_map_delete_elem,
	.map_get_next_key = htab_map_get_next_key,
	.map_lookup_and_delete_elem = htab_map_lookup_and_delete_elem,
	.map_lookup_batch = htab_map_lookup_batch,
	.map_lookup_and_delete_batch = htab_map_lookup_and_delete_batch,
	.map_update_batch = generic_map_update_batch,
	.map_delete_batch = generic_map_delete_batch,
	.map_push_elem = nullptr,
	.map_pop_elem = nullptr,
	.map_peek_elem = nullptr,
	.map_mmapable = nullptr,
	.map_mmap_check = nullptr,
	.map_mmap = nullptr,
	.map_check_btf = nullptr,
	.map_get_hash = nullptr,
};

const bpf_map_ops htab_percpu_map_ops = {
	.map_alloc_check = htab_map_alloc_check,
	.map_mem_size = htab_map_mem_size,
	.map_alloc = htab_map_alloc,
	.map_init = htab_map_init,
	.map_attach = htab_map_attach,
	.map_lookup_elem = htab_percpu_map_lookup_elem,
	.map_lookup_percpu_elem = htab_percpu_map_lookup_percpu_elem,
	.map_copy_value = htab_map_copy_value,
	.map_update_elem = htab_percpu_map_update_elem,
	.map_update_value = htab_map_update_elem,
	.map_delete_elem = htab_map_delete_elem,
	.map_get_next_key = htab_map_get_next_key,
	.map_lookup_and_delete_elem = htab_map_lookup_and_delete_elem,
	.map_lookup_batch = htab_map_lookup_batch,
	.map_lookup_and_delete_batch = htab_map_lookup_and_delete_batch,
	.map_update_batch = generic_map_update_batch,
	.map_delete_batch = generic_map_delete_batch,
	.map_push_elem = nullptr,
	.map_pop_elem = nullptr,
	.map_peek_elem = nullptr,
	.map_mmapable = nullptr,
	.map_mmap_check = nullptr,
	.map_mmap = nullptr,
	.map_check_btf = nullptr,
	.map_get_hash = nullptr,
};

const bpf_map_ops htab_lru_map_ops = {
	.map_alloc_check = htab_map_alloc_check,
	.map_mem_size = htab_map_mem_size,
	.map_alloc = htab_map_alloc,
	.map_init = htab_map_init,
	.map_attach = htab_map_attach,
	.map_lookup_elem = htab_lru_map_lookup_elem,
	.map_lookup_percpu_elem = nullptr,
	.map_copy_value = htab_map_copy_value,
	.map_update_elem = htab_lru_map_update_elem,
	.map_update_value = htab_lru_map_update_elem,
	.map_delete_elem = htab_map_delete_elem,
	.map_get_next_key = htab_map_get_next_key,
	.map_lookup_and_delete_elem = htab_map_lookup_and_delete_elem,
	.map_lookup_batch = htab_map_lookup_batch,
	.map_lookup_and_delete_batch = htab_map_lookup_and_delete_batch,
	.map_update_batch = generic_map_update_batch,
	.map_delete_batch = generic_map_delete_batch,
	.map_push_elem = nullptr,
	.map_pop_elem = nullptr,
	.map_peek_elem = nullptr,
	.map_mmapable = nullptr,
	.map_mmap_check = nullptr,
	.map_mmap = nullptr,
	.map_check_btf = nullptr,
	.map_get_hash = nullptr,
};

const bpf_map_ops htab_lru_percpu_map_ops = {
	.map_alloc_check = htab_map_alloc_check,
	.map_mem_size = htab_map_mem_size,
	.map_alloc = htab_map_alloc,
	.map_init = htab_map_init,
	.map_attach = htab_map_attach,
	.map_lookup_elem = htab_lru_percpu_map_lookup_elem,
	.map_lookup_percpu_elem = htab_lru_percpu_map_lookup_percpu_elem,
	.map_copy_value = htab_map_copy_value,
	.map_update_elem = htab_lru_percpu_map_update_elem,
	.map_update_value = htab_lru_map_update_elem,
	.map_delete_elem = htab_map_delete_elem,
	.map_get_next_key = htab_map_get_next_key,
	.map_lookup_and_delete_elem = htab_map_lookup_and_delete_elem,
	.map_lookup_batch = htab_map_lookup_batch,
	.map_lookup_and_delete_batch = htab_map_lookup_and_delete_batch,
	.map_update_batch = generic_map_update_batch,
	.map_delete_batch = generic_map_delete_batch,
	.map_push_elem = nullptr,
	.map_pop_elem = nullptr,
	.map_peek_elem = nullptr,
	.map_mmapable = nullptr,
	.map_mmap_check = nullptr,
	.map_mmap = nullptr,
	.map_check_btf = nullptr,
	.map_get_hash = nullptr,
};

} // namespace bpfmap
