// The hash family's map_lookup_multi: many keys looked up with their cache misses
// overlapped.
//
// In a map larger than the caches, one lookup waits for its bucket's line and then for its
// element's; back to back, n lookups wait 2n times, one miss after another. A batch runs
// each key through three stages, AHEAD keys apart, so that many misses are in flight at
// once and a key's lines have arrived by the time it is probed:
//
//   key i + 2 * AHEAD   hash it; prefetch its bucket
//   key i + AHEAD       read its bucket (arrived by now): prefetch the element its first
//                       matching tag names
//   key i               probe it with the single lookup's own search (htab_find_hashed)
//
// The middle stage fetches the one element line the probe will read, where prefetching
// both homes (hashtab.h) would fetch two, and it works as well for the maps that have no
// homes (LRU, per-CPU, BPF_F_NO_PREALLOC). It reads the bucket without the lookup's checks:
// what it finds is only a hint, so an element index is bounds-checked and nothing more.
// The probe decides, under the single lookup's concurrency contract (hashtab.h): a batch
// answers what n single lookups would.
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/hash.h"
#include "core/percpu.h"
#include "maps/hashtab.h"

namespace bpfmap {

namespace {

// Keys between two stages. A DRAM miss is worth the work of a few keys here; 16 keeps the
// misses of 16 to 32 keys in flight, which on the 2-core machine this was tuned on (1M
// entries) was as fast as 32 and faster than 8. A power of two.
constexpr uint32_t AHEAD = 16;
constexpr uint32_t RING = 2 * AHEAD; // hashes kept: those of keys i to i + 2 * AHEAD - 1

// hash_key() of a KS-byte key, XXH3 inlined: for one known length its code is a few
// instructions, where the call otherwise made is a frame and a dispatch on the length.
template <uint32_t KS> [[gnu::flatten]] uint64_t hash_sized(const void *key, uint64_t seed)
{
	return hash_key(key, KS, seed);
}

template <uint32_t KS>
[[gnu::always_inline]] inline uint64_t hash_of(const bpf_htab *h, const char *key)
{
	return KS ? hash_sized<KS>(key, h->seed) : hash_key(key, h->key_size, h->seed);
}

[[gnu::always_inline]] inline const bucket *bucket_of(const bpf_htab *h, uint64_t hash)
{
	return &h->buckets[static_cast<uint32_t>(hash) & h->bucket_mask];
}

// The middle stage: the element that the bucket's first slot tagged like this key names,
// its first line and the line where its value starts. Always inlined, as prefetch_homes is,
// so that the compiler keeps the prefetches.
[[gnu::always_inline]] inline void prefetch_elem(const bpf_htab *h, uint64_t hash)
{
	const bucket *bk = bucket_of(h, hash);
	uint8_t tag = tag_of(hash);
	uint64_t m = match_bytes(bk->tagw[0].load(std::memory_order_relaxed), tag);
	uint32_t i = 0;
	if (!m) {
		m = match_bytes(bk->tagw[1].load(std::memory_order_relaxed) & 0xffffffffull, tag);
		if (!m)
			return;
		i = 8;
	}
	i += static_cast<uint32_t>(__builtin_ctzll(m)) / 8;
	uint32_t idx = bk->slot[i].load(std::memory_order_relaxed);
	if (!h->idx_ok(idx))
		return;
	const char *e = reinterpret_cast<const char *>(h->elem(idx));
	__builtin_prefetch(e);
	__builtin_prefetch(e + h->key_off_value);
}

// KS: the key size where it is known at compile time (as the single lookup specialises it).
// value_off: where the caller's value sits in an element's value (a CPU's slot).
template <uint32_t KS>
long lookup_multi(bpf_htab *h, const char *keys, uint32_t n, void **ptrs, size_t value_off)
{
	const size_t ks = key_len<KS>(h);
	uint64_t hashes[RING]; // key j's at hashes[j % RING]
	auto hash_ahead = [&](uint32_t j) {
		hashes[j % RING] = hash_of<KS>(h, keys + j * ks);
		__builtin_prefetch(bucket_of(h, hashes[j % RING]));
	};
	for (uint32_t j = 0; j < n && j < RING; j++)
		hash_ahead(j);
	for (uint32_t j = 0; j < n && j < AHEAD; j++)
		prefetch_elem(h, hashes[j]);
	long found = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t hash = hashes[i % RING];
		if (n - i > AHEAD)
			prefetch_elem(h, hashes[(i + AHEAD) % RING]);
		if (n - i > RING)
			hash_ahead(i + RING);
		htab_elem *e = htab_find_hashed(h, keys + i * ks, hash);
		if (!e) {
			ptrs[i] = nullptr;
			continue;
		}
		if (h->is_lru)
			htab_mark_referenced(h, e);
		ptrs[i] = h->elem_value(e) + value_off;
		found++;
	}
	return found;
}

} // namespace

long htab_map_lookup_multi(bpf_map *map, const void *keys, uint32_t n, void **ptrs)
{
	bpf_htab *h = htab_of(map);
	// A per-CPU map's pointers are into the value of the CPU the caller runs on as the batch
	// starts, as a single lookup's are into the value of the CPU it runs on.
	size_t value_off =
		h->percpu ? static_cast<size_t>(this_cpu_slot(h->nr_cpus)) * h->pcpu_size : 0;
	const char *k = static_cast<const char *>(keys);
	return by_key_size(
		h, [&](auto ks) { return lookup_multi<ks.value>(h, k, n, ptrs, value_off); });
}

} // namespace bpfmap
