// BPF_MAP_TYPE_HASH, PERCPU_HASH, LRU_HASH and LRU_PERCPU_HASH: lookups, writers and the
// ops tables. The design, the concurrency contract and the lock order are in hashtab.h.
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <vector>

#include "core/batch.h"
#include "core/hash.h"
#include "core/lock.h"
#include "core/lru_list.h"
#include "core/map.h"
#include "core/percpu.h"
#include "core/registry.h"
#include "core/shmem.h"
#include "maps/hashtab.h"

namespace bpfmap {

thread_local std::vector<uint32_t> htab_lru_unlinked;

namespace {

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
				zero_shared(dst + static_cast<size_t>(cpu) * h->pcpu_size,
					    h->value_size);
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
	if (h->is_lru)
		h->lru_part(e)->hash.store(static_cast<uint32_t>(hash), std::memory_order_relaxed);
	copy_to_shared(h->elem_key(e), key, h->key_size);
	write_value(h, h->elem_value(e), value, true);
	e->seq.store(busy + 1, std::memory_order_release);
	return e;
}

// Rewrite a linked element's value in place (bucket lock held); its count is odd meanwhile.
void elem_rewrite(bpf_htab *h, htab_elem *e, value_src value)
{
	uint32_t seq = e->seq.load(std::memory_order_relaxed);
	e->seq.store(seq + 1, std::memory_order_relaxed);
	std::atomic_thread_fence(std::memory_order_release);
	write_value(h, h->elem_value(e), value, false);
	e->seq.store(seq + 2, std::memory_order_release);
}

// ---- lookup --------------------------------------------------------------------------

enum class probe_result { hit, miss, retry };

// Whether e holds key, judged consistently: the element's sequence count is read before
// and after, so an element reused for another key while we looked says "retry" rather
// than "miss" (a miss then could skip the key's replacement, published in a slot we
// already passed). On a hit the value is copied to out, if out is not null. Inlined: it is
// most of a lookup, and a call would cost the quick path a frame.
template <uint32_t KS = 0>
[[gnu::always_inline]] inline probe_result probe(bpf_htab *h, htab_elem *e, const void *key,
						 void *out, uint32_t *seq = nullptr)
{
	uint32_t s = e->seq.load(std::memory_order_acquire);
	if (seq)
		*seq = s;
	if (s & 1)
		return probe_result::retry;
	bool hit = elem_matches<KS>(h, e, key);
	if (hit && out)
		copy_from_shared(out, h->elem_value(e), h->uvalue_size);
	std::atomic_thread_fence(std::memory_order_acquire);
	if (e->seq.load(std::memory_order_relaxed) != s)
		return probe_result::retry;
	return hit ? probe_result::hit : probe_result::miss;
}

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
		probe_result r = probe(h, e, key, out, &seq);
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
		probe_result r = probe(h, e, key, out, &seq);
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

} // namespace

// Lock-free search of one bucket: slots whose tag matches, then the overflow chain. Starts
// over when an element changed under it; after READ_RESTARTS of those, or at once on a
// bucket that looks corrupt, searches under the bucket lock instead.
htab_elem *htab_bucket_find(bpf_htab *h, uint32_t b, uint64_t hash, const void *key, void *out)
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

namespace {

// htab_bucket_find's common cases in few instructions, so that back-to-back lookups that
// miss the cache overlap in the CPU: the first slot whose tag matches holds the key (a hit
// as probe() judges one, still in its slot afterwards), or no tag matches and the bucket
// has no chain (a miss). Anything else is not decided here.
enum class quick_result { hit, miss, unsure };

template <uint32_t KS>
[[gnu::always_inline]] inline quick_result bucket_find_quick(bpf_htab *h, uint32_t b, uint64_t hash,
							     const void *key, void *out,
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
			return w1 >> 32 == (NULLS_BIT | b) ? quick_result::miss
							   : quick_result::unsure;
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
	if ((s & 1) || !elem_matches<KS>(h, e, key))
		return quick_result::unsure;
	if (out)
		copy_from_shared(out, h->elem_value(e), h->uvalue_size);
	std::atomic_thread_fence(std::memory_order_acquire);
	if (!slot_still(bk, i, idx, e, s))
		return quick_result::unsure;
	*found = e;
	return quick_result::hit;
}

// The search of a key already hashed: the quick path, else the full lock-free one.
template <uint32_t KS>
[[gnu::always_inline]] inline htab_elem *find_hashed(bpf_htab *h, const void *key, uint64_t hash,
						     void *out)
{
	uint32_t b = static_cast<uint32_t>(hash) & h->bucket_mask;
	htab_elem *e = nullptr;
	quick_result r = bucket_find_quick<KS>(h, b, hash, key, out, &e);
	if (__builtin_expect(r != quick_result::unsure, 1))
		return e;
	return htab_bucket_find(h, b, hash, key, out);
}

// Not inlined into htab_find: each key size, with or without a value to copy out, gets a
// frame of its own, as small as it can be (a lookup that copies nothing makes no calls).
template <uint32_t KS, bool COPY>
[[gnu::noinline]] htab_elem *htab_find_sized(bpf_htab *h, const void *key, void *out)
{
	if (!COPY)
		out = nullptr;
	uint64_t hash = hash_key(key, key_len<KS>(h), h->seed);
	if (h->n_groups)
		prefetch_homes<0>(h, hash);
	return find_hashed<KS>(h, key, hash, out);
}

template <bool COPY> htab_elem *htab_find_copying(bpf_htab *h, const void *key, void *out)
{
	return by_key_size(h,
			   [&](auto ks) { return htab_find_sized<ks.value, COPY>(h, key, out); });
}

// Find key, copying its value to out when out is not null.
htab_elem *htab_find(bpf_htab *h, const void *key, void *out)
{
	return out ? htab_find_copying<true>(h, key, out) : htab_find_copying<false>(h, key, out);
}

} // namespace

// What htab_find does after hashing, without a copy: for a caller that hashed the key
// earlier and prefetched its lines meanwhile (hashtab_multi.cc).
htab_elem *htab_find_hashed(bpf_htab *h, const void *key, uint64_t hash)
{
	return by_key_size(h,
			   [&](auto ks) { return find_hashed<ks.value>(h, key, hash, nullptr); });
}

namespace {

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

// Where key sits in a locked bucket. A slot or link that names no element, or a chain
// longer than the pool, makes the bucket corrupt. KS as for lookups (hashtab.h, key_len).
template <uint32_t KS = 0>
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
		return elem_matches<KS>(h, p.e, key);
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
		if (elem_matches<KS>(h, e, key)) {
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

// Mark an element that was just unlinked, so that a reader who reached it through a stale
// link, or who stands on it in a chain, notices (see htab_bucket_find).
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
		return -EINVAL; // no map records a bpf_spin_lock in its value yet
	return 0;
}

template <uint32_t KS>
int update_locked(bpf_htab *h, bucket *bk, uint64_t hash, const void *key, value_src value,
		  uint64_t flags)
{
	position p = locked_find<KS>(h, bk, hash, key);
	if (p.err)
		return p.err;
	if (p.e && flags == uapi::BPF_NOEXIST)
		return -EEXIST;
	if (!p.e && flags == uapi::BPF_EXIST)
		return -ENOENT;
	if (p.e) {
		elem_rewrite(h, p.e, value);
		return 0;
	}
	if (!count_inc_below_max(h))
		return -E2BIG;
	htab_elem *e = htab_pool_pop(h, hash);
	if (!e) {
		// Only reachable while elements stranded by a dead writer await the audit.
		h->ctl_->count.fetch_sub(1, std::memory_order_relaxed);
		return -E2BIG;
	}
	insert_new(h, bk, hash, elem_fill(h, e, hash, key, value));
	return 0;
}

// htab_bucket_find() under the bucket lock: what the bucket holds now, decided by a bounded walk.
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

// One frame per common key size, as for lookups.
template <uint32_t KS>
[[gnu::noinline]] int htab_update_sized(bpf_htab *h, const void *key, value_src value,
					uint64_t flags)
{
	uint64_t hash = hash_key(key, key_len<KS>(h), h->seed);
	uint32_t b = static_cast<uint32_t>(hash) & h->bucket_mask;
	// The bucket, the key's homes (where its element most likely is, or goes) and the
	// lock are three cache misses in a big map: start the first two before waiting on the
	// third.
	__builtin_prefetch(&h->buckets[b], 1);
	if (h->n_groups)
		prefetch_homes<1>(h, hash);
	return with_bucket_locked(h, b, [&](bucket *bk) {
		return update_locked<KS>(h, bk, hash, key, value, flags);
	});
}

int htab_update(bpf_htab *h, const void *key, value_src value, uint64_t flags)
{
	int err = check_update_flags(flags);
	if (err)
		return err;
	return by_key_size(
		h, [&](auto ks) { return htab_update_sized<ks.value>(h, key, value, flags); });
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

} // namespace

// Take the element at p out of its bucket and give it back to the pool (or the LRU, once
// the bucket is unlocked).
void htab_remove_at(bpf_htab *h, bucket *bk, const position &p)
{
	unlink_at(bk, p);
	retire(p.e);
	if (h->is_lru) {
		htab_lru_unlinked.push_back(h->index_of(p.e));
		return;
	}
	htab_pool_push(h, p.e);
	h->ctl_->count.fetch_sub(1, std::memory_order_relaxed);
}

namespace {

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
		htab_remove_at(h, bk, p);
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

} // namespace

// ---- LRU -------------------------------------------------------------------------------
//
// LRU_HASH and LRU_PERCPU_HASH, as the kernel's htab_lru_* functions: elements come from
// the LRU (core/lru_list.h), which may evict to supply one, and that happens before the
// bucket lock is taken. Syscall lookups leave reference bits alone; the pointer lookups a
// program makes set them.

// Where element e sits in its (locked) bucket, found by identity; p.e is null if it is not
// linked there.
position htab_locate(bpf_htab *h, bucket *bk, htab_elem *e)
{
	uint32_t idx = h->index_of(e);
	uint64_t w[2] = {bk->tagw[0].load(std::memory_order_relaxed),
			 bk->tagw[1].load(std::memory_order_relaxed)};
	for (uint32_t i = 0; i < SLOTS; i++)
		if (tag_at(w, i) && bk->slot[i].load(std::memory_order_relaxed) == idx)
			return {e, static_cast<int>(i), nullptr};
	htab_elem *prev = nullptr;
	for (uint32_t x = chain_head(bk), steps = 0;
	     !(x & NULLS_BIT) && x < h->n_elems && steps < h->n_elems; steps++) {
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
	uint32_t b = h->lru_part(e)->hash.load(std::memory_order_relaxed) & h->bucket_mask;
	bucket *bk = &h->buckets[b];
	lock_guard g(h->locks[b & h->lock_mask]);
	if (g.owner_died())
		h->ctl_->needs_audit.store(1, std::memory_order_relaxed);
	position p = htab_locate(h, bk, e);
	if (!p.e)
		return false;
	unlink_at(bk, p);
	retire(e);
	return true;
}

namespace {

template <uint32_t KS>
[[gnu::noinline]] int htab_lru_update_sized(bpf_htab *h, const void *key, value_src value,
					    uint64_t flags)
{
	uint64_t hash = hash_key(key, key_len<KS>(h), h->seed);
	// The bucket's line comes in while the LRU hands out a node.
	__builtin_prefetch(&h->buckets[static_cast<uint32_t>(hash) & h->bucket_mask], 1);
	// A per-CPU value of a key that exists is rewritten in place: BPF_EXIST takes no node.
	uint32_t fresh = LRU_NIL, old = LRU_NIL;
	if (!h->percpu || flags != uapi::BPF_EXIST) {
		fresh = lru_pop_free(&h->lru);
		if (fresh == LRU_NIL)
			return -ENOMEM;
		if (!h->idx_ok(fresh))
			return -EFAULT; // the LRU's lists are corrupt
	}
	// The new element is filled only once the flags allow the update (the kernel fills it
	// before): a reader that still holds it from before it was evicted must never see the
	// value of an update that then fails.
	int err = with_bucket_locked(
		h, static_cast<uint32_t>(hash) & h->bucket_mask, [&](bucket *bk) {
			position p = locked_find<KS>(h, bk, hash, key);
			if (p.err)
				return p.err;
			if (p.e && flags == uapi::BPF_NOEXIST)
				return -EEXIST;
			if (!p.e && flags == uapi::BPF_EXIST)
				return -ENOENT;
			if (p.e && h->percpu) {
				htab_mark_referenced(h, p.e);
				elem_rewrite(h, p.e, value);
				return 0;
			}
			if (p.e == h->elem(fresh))
				return -EFAULT; // the LRU handed out a linked element
			htab_elem *e = elem_fill(h, h->elem(fresh), hash, key, value);
			if (p.e) {
				// The replacement was just used: it starts referenced.
				htab_mark_referenced(h, e);
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
		lru_push_free(&h->lru, fresh);
	if (old != LRU_NIL)
		lru_push_free(&h->lru, old);
	return err;
}

int htab_lru_update(bpf_htab *h, const void *key, value_src value, uint64_t flags)
{
	if (flags > uapi::BPF_EXIST)
		return -EINVAL;
	return by_key_size(
		h, [&](auto ks) { return htab_lru_update_sized<ks.value>(h, key, value, flags); });
}

int htab_lru_map_update_elem(bpf_map *map, const void *key, const void *value, uint64_t flags)
{
	return htab_lru_update(htab_of(map), key, {value}, flags);
}

int htab_lru_percpu_map_update_elem(bpf_map *map, const void *key, const void *value,
				    uint64_t flags)
{
	return htab_lru_update(htab_of(map), key,
			       {value, static_cast<int>(this_cpu_slot(htab_of(map)->nr_cpus))},
			       flags);
}

htab_elem *lru_find_ref(bpf_htab *h, const void *key)
{
	htab_elem *e = htab_find(h, key, nullptr);
	if (e)
		htab_mark_referenced(h, e);
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
	return htab_lru_percpu_map_lookup_percpu_elem(map, key,
						      this_cpu_slot(htab_of(map)->nr_cpus));
}

} // namespace

const bpf_map_ops htab_map_ops = {
	.map_alloc_check = htab_map_alloc_check,
	.map_mem_size = htab_map_mem_size,
	.map_alloc = htab_map_alloc,
	.map_init = htab_map_init,
	.map_attach = htab_map_attach,
	.map_lookup_elem = htab_map_lookup_elem,
	.map_lookup_multi = htab_map_lookup_multi,
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
};

const bpf_map_ops htab_percpu_map_ops = {
	.map_alloc_check = htab_map_alloc_check,
	.map_mem_size = htab_map_mem_size,
	.map_alloc = htab_map_alloc,
	.map_init = htab_map_init,
	.map_attach = htab_map_attach,
	.map_lookup_elem = htab_percpu_map_lookup_elem,
	.map_lookup_percpu_elem = htab_percpu_map_lookup_percpu_elem,
	.map_lookup_multi = htab_map_lookup_multi,
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
};

const bpf_map_ops htab_lru_map_ops = {
	.map_alloc_check = htab_map_alloc_check,
	.map_mem_size = htab_map_mem_size,
	.map_alloc = htab_map_alloc,
	.map_init = htab_map_init,
	.map_attach = htab_map_attach,
	.map_lookup_elem = htab_lru_map_lookup_elem,
	.map_lookup_multi = htab_map_lookup_multi,
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
};

const bpf_map_ops htab_lru_percpu_map_ops = {
	.map_alloc_check = htab_map_alloc_check,
	.map_mem_size = htab_map_mem_size,
	.map_alloc = htab_map_alloc,
	.map_init = htab_map_init,
	.map_attach = htab_map_attach,
	.map_lookup_elem = htab_lru_percpu_map_lookup_elem,
	.map_lookup_percpu_elem = htab_lru_percpu_map_lookup_percpu_elem,
	.map_lookup_multi = htab_map_lookup_multi,
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
};

} // namespace bpfmap
