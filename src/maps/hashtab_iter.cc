// The walks over a whole hash map, in bucket order: BPF_MAP_GET_NEXT_KEY and the batch
// ops (BPF_MAP_LOOKUP_BATCH, BPF_MAP_LOOKUP_AND_DELETE_BATCH).
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/batch.h"
#include "core/hash.h"
#include "core/lock.h"
#include "core/shmem.h"
#include "core/uaccess.h"
#include "maps/hashtab.h"

namespace bpfmap {

// ---- iteration -----------------------------------------------------------------------

namespace {

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
			position p = htab_locate(h, bk, after);
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

} // namespace

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
		return h->idx_ok(idx) && elem_matches(h, h->elem(idx), key);
	});
	if (slot >= 0)
		return first_key_from(h, b, static_cast<uint32_t>(slot) + 1, nullptr, next_key);
	htab_elem *e = htab_bucket_find(h, b, hash, key, nullptr);
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

namespace {

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

// The hash of the key an element holds (only LRU elements keep it). A lock-free caller
// may hash a key being rewritten, and checks the element's sequence count afterwards;
// ThreadSanitizer builds copy the key out first, as copy_from_shared reads shared bytes.
uint64_t elem_hash(const bpf_htab *h, htab_elem *e)
{
#ifdef BPFMAP_TSAN
	std::vector<unsigned char> key(h->key_size);
	copy_from_shared(key.data(), h->elem_key(e), h->key_size);
	return hash_key(key.data(), h->key_size, h->seed);
#else
	return hash_key(h->elem_key(e), h->key_size, h->seed);
#endif
}

// Which of its bucket's virtual buckets an element falls in.
uint32_t sub_of(const bpf_htab *h, const vbucket_geometry &g, htab_elem *e)
{
	return (static_cast<uint32_t>(elem_hash(h, e)) >> g.bucket_bits) & (g.per_bucket - 1);
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
	auto add = [&](htab_elem *e) { out->push_back({e, sub_of(h, g, e)}); };
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
			htab_remove_at(h, bk, position{e, static_cast<int>(i), nullptr});
	}
	htab_elem *prev = nullptr;
	uint32_t idx = chain_head(bk);
	for (uint32_t steps = 0; !(idx & NULLS_BIT) && h->idx_ok(idx) && steps < h->n_elems;
	     steps++) {
		htab_elem *e = h->elem(idx);
		idx = e->next.load(std::memory_order_relaxed);
		if (doomed(e)) {
			htab_remove_at(h, bk, position{e, -1, prev});
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
	uint32_t stop = pick_vbuckets(
		elems.size(), [&](size_t i) { return elems[i].sub; }, first, room, g, &begin, &end,
		full);
	for (size_t i = begin; i < end; i++) {
		copy_from_shared(keys->take(ks), h->elem_key(elems[i].e), ks);
		copy_from_shared(values->take(vs), h->elem_value(elems[i].e), vs);
	}
	if (do_delete && end > begin) {
		bucket_remove_if(h, bk, [&](htab_elem *e) {
			uint32_t sub = sub_of(h, g, e);
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
			snap[n++] = {e, i, idx, seq, sub_of(h, g, e)};
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
			stop = pick_vbuckets(
				n, [&](size_t i) { return snap[i].sub; }, first, room, g, &begin,
				&end, &over);
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
			same = bk->slot[snap[i].slot].load(std::memory_order_relaxed) ==
				       snap[i].idx &&
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

int htab_batch(bpf_map *map, const uapi::batch_attr &attr, uapi::batch_attr *uattr, bool do_delete)
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
		} else if (!lockless ||
			   !batch_bucket_snapshot(h, bk, g, &cursor, attr.count - total,
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
			if (n && ((err = copy_to_user(attr.keys + uint64_t(total) * ks,
						      keys.bytes.data(), n * ks)) ||
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

} // namespace

int htab_map_lookup_batch(bpf_map *map, const uapi::batch_attr &attr, uapi::batch_attr *uattr)
{
	return htab_batch(map, attr, uattr, false);
}

int htab_map_lookup_and_delete_batch(bpf_map *map, const uapi::batch_attr &attr,
				     uapi::batch_attr *uattr)
{
	return htab_batch(map, attr, uattr, true);
}

} // namespace bpfmap
