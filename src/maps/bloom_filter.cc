// BPF_MAP_TYPE_BLOOM_FILTER.
//
// The kernel's filter bit for bit: the same array size (max_entries * k * 7 / 5 bits, a
// power of two, at least 64; 2^32 bits when that overflows), the same hash (jhash of the
// value, or jhash2 when value_size is a multiple of 4, seeded with hash_seed + i for the
// i-th of k functions) and the same bit order, so that with BPF_F_ZERO_SEED the same pushes
// answer every peek as the kernel's filter does.
//
// The bit array is the data area, 64-bit words set with an atomic OR (only when the bit
// is clear, so that a filter that has settled stays read-only in every cache) and read
// with plain loads. Nothing is ever cleared, so there is no lock and no torn state: a
// pusher that dies has set some of its bits, which can only add false positives.
//
// The region is untrusted: what the control block says (the bit mask, the number of hash
// functions, the word count the hash reads) must be what the header implies, or attach
// refuses the map; the handle keeps its own copy and reads only bits afterwards. Every bit
// index is masked by the handle's mask, which fits the data area.
#include <sys/random.h>

#include <atomic>
#include <bit>
#include <cerrno>

#include "core/hash.h"
#include "core/map.h"
#include "core/registry.h"
#include "core/shmem.h"

namespace bpfmap {
namespace {

constexpr uint32_t BLOOM_CREATE_FLAG_MASK =
	uapi::BPF_F_NUMA_NODE | uapi::BPF_F_ZERO_SEED | uapi::BPF_F_ACCESS_MASK;
constexpr uint32_t KMALLOC_MAX_SIZE = 1u << 22;
constexpr uint32_t DEFAULT_HASH_FUNCS = 5;

struct bloom_ctl {
	uint32_t bitset_mask;
	uint32_t hash_seed;
	uint32_t aligned_u32_count; // value_size / 4 when it divides evenly, else 0
	uint32_t nr_hash_funcs;
};

struct bloom_geometry {
	uint64_t bitset_bytes;
	uint32_t bitset_mask;
	uint32_t nr_hash_funcs;
};

bloom_geometry bloom_layout(uint32_t max_entries, uint64_t map_extra)
{
	bloom_geometry g;
	g.nr_hash_funcs = map_extra ? static_cast<uint32_t>(map_extra) : DEFAULT_HASH_FUNCS;
	// n * k / ln 2 bits, with 7/5 for 1/ln 2, in 32-bit arithmetic as the kernel does it.
	uint32_t nr_bits;
	if (__builtin_mul_overflow(max_entries, g.nr_hash_funcs, &nr_bits) ||
	    __builtin_mul_overflow(nr_bits / 5, 7u, &nr_bits) || nr_bits > (1u << 31)) {
		g.bitset_bytes = (static_cast<uint64_t>(UINT32_MAX) + 7) / 8;
		g.bitset_mask = UINT32_MAX;
	} else {
		nr_bits = nr_bits <= 64 ? 64 : std::bit_ceil(nr_bits);
		g.bitset_bytes = (static_cast<uint64_t>(nr_bits) + 7) / 8;
		g.bitset_mask = nr_bits - 1;
	}
	g.bitset_bytes = round_up(g.bitset_bytes, sizeof(uint64_t));
	return g;
}

struct bpf_bloom_filter : bpf_map {
	bloom_ctl c{}; // a process-local copy: it never changes after create
	std::atomic<uint64_t> *bitset = nullptr;

	uint32_t bit(const void *value, uint32_t i) const
	{
		uint32_t h = c.aligned_u32_count
				     ? jhash2(value, c.aligned_u32_count, c.hash_seed + i)
				     : jhash(value, value_size, c.hash_seed + i);
		return h & c.bitset_mask;
	}
};

bpf_bloom_filter *bloom_of(bpf_map *map) { return static_cast<bpf_bloom_filter *>(map); }

int bloom_map_alloc_check(const uapi::map_create_attr &attr)
{
	if (attr.value_size > KMALLOC_MAX_SIZE)
		return -E2BIG;
	return 0;
}

// The kernel checks the rest when it allocates, after the offload and token checks.
int bloom_map_mem_size(const uapi::map_create_attr &attr, size_t *size)
{
	if (attr.key_size != 0 || attr.value_size == 0 || attr.max_entries == 0 ||
	    (attr.map_flags & ~BLOOM_CREATE_FLAG_MASK) || (attr.map_extra & ~0xfull))
		return -EINVAL;
	*size = bloom_layout(attr.max_entries, attr.map_extra).bitset_bytes;
	return 0;
}

bpf_map *bloom_map_alloc() { return new bpf_bloom_filter; }

// The control block of a filter with the handle's attributes and this seed.
bloom_ctl bloom_ctl_of(const bpf_map *map, uint32_t hash_seed)
{
	bloom_geometry g = bloom_layout(map->max_entries, map->map_extra);
	bloom_ctl c;
	c.bitset_mask = g.bitset_mask;
	c.hash_seed = hash_seed;
	c.aligned_u32_count = map->value_size % 4 == 0 ? map->value_size / 4 : 0;
	c.nr_hash_funcs = g.nr_hash_funcs;
	return c;
}

void bloom_map_init(bpf_map *map)
{
	uint32_t seed = 0;
	if (!(map->map_flags & uapi::BPF_F_ZERO_SEED))
		while (getrandom(&seed, sizeof(seed), 0) < 0 && errno == EINTR) {
		}
	*map->ctl<bloom_ctl>() = bloom_ctl_of(map, seed);
}

// Only the seed is the creator's choice; the rest must be what the header implies.
int bloom_map_attach(bpf_map *map)
{
	bpf_bloom_filter *b = bloom_of(map);
	bloom_ctl shared;
	copy_from_shared(&shared, map->ctl<bloom_ctl>(), sizeof(shared));
	bloom_ctl want = bloom_ctl_of(map, shared.hash_seed);
	if (shared.bitset_mask != want.bitset_mask || shared.nr_hash_funcs != want.nr_hash_funcs ||
	    shared.aligned_u32_count != want.aligned_u32_count)
		return -EINVAL;
	b->c = want;
	b->bitset = reinterpret_cast<std::atomic<uint64_t> *>(map->data);
	return 0;
}

int bloom_map_peek_elem(bpf_map *map, void *value)
{
	bpf_bloom_filter *b = bloom_of(map);
	for (uint32_t i = 0; i < b->c.nr_hash_funcs; i++) {
		uint32_t h = b->bit(value, i);
		if (!(b->bitset[h / 64].load(std::memory_order_relaxed) & (1ull << (h % 64))))
			return -ENOENT;
	}
	return 0;
}

int bloom_map_push_elem(bpf_map *map, const void *value, uint64_t flags)
{
	if (flags != uapi::BPF_ANY)
		return -EINVAL;
	bpf_bloom_filter *b = bloom_of(map);
	for (uint32_t i = 0; i < b->c.nr_hash_funcs; i++) {
		uint32_t h = b->bit(value, i);
		std::atomic<uint64_t> &w = b->bitset[h / 64];
		uint64_t mask = 1ull << (h % 64);
		if (!(w.load(std::memory_order_relaxed) & mask))
			w.fetch_or(mask, std::memory_order_relaxed);
	}
	return 0;
}

// The syscall's update is a push; its lookup, a peek of the caller's value (the dispatcher
// copies it in first).
int bloom_map_update_value(bpf_map *map, const void *, const void *value, uint64_t flags)
{
	return bloom_map_push_elem(map, value, flags);
}

int bloom_map_copy_value(bpf_map *map, const void *, void *value, uint64_t)
{
	return bloom_map_peek_elem(map, value);
}

// Programs use push and peek; the keyed calls answer as the kernel's do.
void *bloom_map_lookup_elem(bpf_map *, const void *) { return nullptr; }

int bloom_map_update_elem(bpf_map *, const void *, const void *, uint64_t) { return -EINVAL; }

int bloom_map_delete_elem(bpf_map *, const void *) { return -EOPNOTSUPP; }

int bloom_map_get_next_key(bpf_map *, const void *, void *) { return -EOPNOTSUPP; }

// A bloom filter has no key: only a map without a key type may carry BTF.
int bloom_map_check_btf(const uapi::map_create_attr &, const btf::type_ref *key,
			const btf::type_ref &)
{
	return key ? -EINVAL : 0;
}

} // namespace

const bpf_map_ops bloom_filter_map_ops = {
	.map_alloc_check = bloom_map_alloc_check,
	.map_mem_size = bloom_map_mem_size,
	.map_alloc = bloom_map_alloc,
	.map_init = bloom_map_init,
	.map_attach = bloom_map_attach,
	.map_lookup_elem = bloom_map_lookup_elem,
	.map_copy_value = bloom_map_copy_value,
	.map_update_elem = bloom_map_update_elem,
	.map_update_value = bloom_map_update_value,
	.map_delete_elem = bloom_map_delete_elem,
	.map_get_next_key = bloom_map_get_next_key,
	.map_push_elem = bloom_map_push_elem,
	.map_peek_elem = bloom_map_peek_elem,
	.map_check_btf = bloom_map_check_btf,
};

} // namespace bpfmap
