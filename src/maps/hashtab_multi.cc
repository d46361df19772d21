// The hash family's map_lookup_multi: many keys looked up with their cache misses
// overlapped.
//
// In a map larger than the caches one lookup waits for its bucket's line and then for its
// element's (the homes of hashtab.h make the second wait mostly overlap the first). Back to
// back, n lookups wait n times. A batch instead hashes each key AHEAD keys before it probes
// it, and at that point starts loading the key's bucket and both its homes: when the key's
// turn comes its lines have arrived or are on their way, and the CPU waits for many misses
// at once rather than for one after another. Prefetches are only hints; the probe is the
// single lookup's own lock-free search, so a batch answers what n lookups would, under the
// same concurrency contract (hashtab.h).
#include <cstddef>
#include <cstdint>

#include "core/hash.h"
#include "core/percpu.h"
#include "maps/hashtab.h"

namespace bpfmap {

namespace {

// Keys between hashing (and prefetching) a key and probing it. Enough to cover a DRAM miss
// with the probes of the keys in between; more only adds lines that may be evicted before
// their turn. A power of two.
constexpr uint32_t AHEAD = 16;

// The LRU lookup's mark, as htab_lru_map_lookup_elem sets it: a plain store, and only when
// the bit is clear, so that hot elements' lines stay shared between CPUs.
void mark_referenced(htab_elem *e)
{
	if (!e->lru_ref.load(std::memory_order_relaxed))
		e->lru_ref.store(1, std::memory_order_relaxed);
}

// Start loading the lines a lookup of a key with this hash reads. Always inlined, as
// prefetch_homes is, so that the compiler keeps the prefetches.
[[gnu::always_inline]] inline void prefetch_key(const bpf_htab *h, uint64_t hash)
{
	__builtin_prefetch(&h->buckets[static_cast<uint32_t>(hash) & h->bucket_mask]);
	if (h->n_groups)
		prefetch_homes<0>(h, hash);
}

// KS: the key size where it is known at compile time (as the single lookup specialises it).
// value_off: where the caller's value sits in an element's value (a CPU's slot).
template <uint32_t KS>
long lookup_multi(bpf_htab *h, const char *keys, uint32_t n, void **ptrs, size_t value_off)
{
	const size_t ks = key_len<KS>(h);
	uint64_t hashes[AHEAD]; // hashes[i % AHEAD]: key i's, from AHEAD keys before its probe
	for (uint32_t i = 0; i < n && i < AHEAD; i++) {
		hashes[i] = hash_key(keys + i * ks, ks, h->seed);
		prefetch_key(h, hashes[i]);
	}
	long found = 0;
	for (uint32_t i = 0; i < n; i++) {
		const char *key = keys + i * ks;
		uint64_t hash = hashes[i % AHEAD];
		if (n - i > AHEAD) {
			uint64_t next = hash_key(key + AHEAD * ks, ks, h->seed);
			hashes[i % AHEAD] = next;
			prefetch_key(h, next);
		}
		htab_elem *e = htab_find_hashed(h, key, hash);
		if (!e) {
			ptrs[i] = nullptr;
			continue;
		}
		if (h->is_lru)
			mark_referenced(e);
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
	switch (h->key_size) {
	case 4:
		return lookup_multi<4>(h, k, n, ptrs, value_off);
	case 8:
		return lookup_multi<8>(h, k, n, ptrs, value_off);
	case 16:
		return lookup_multi<16>(h, k, n, ptrs, value_off);
	default:
		return lookup_multi<0>(h, k, n, ptrs, value_off);
	}
}

} // namespace bpfmap
