// Creation and attach of the hash maps: the region's geometry from the create attributes
// (hashtab.h draws the layout), the control block map_init writes into a fresh region, and
// the handle map_attach fills in from the validated header.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <random>

#include "core/lock.h"
#include "core/lru_list.h"
#include "core/map.h"
#include "core/percpu.h"
#include "maps/hashtab.h"

namespace bpfmap {
namespace {

constexpr uint32_t MAX_LOCKS = 1024;
// Sizing: an average load between 4 and 8 of a bucket's 12 slots. At 8, about one key in
// 80 overflows into a chain; fewer buckets than that would cost more in chains than the
// memory they save.
constexpr uint32_t KEYS_PER_BUCKET = 8;
// The kernel's limits: an element (its 48-byte header, key and value) must fit one
// kmalloc (4 MiB), and its 16-byte bucket array must stay below 2^31 bytes.
constexpr uint64_t MAX_KEY_VALUE_SIZE = (1ull << 22) - 48;
constexpr uint32_t MAX_ENTRIES = 1u << 27;
constexpr uint32_t HTAB_CREATE_FLAG_MASK = uapi::BPF_F_NO_PREALLOC | uapi::BPF_F_NO_COMMON_LRU |
					   uapi::BPF_F_NUMA_NODE | uapi::BPF_F_ACCESS_MASK |
					   uapi::BPF_F_ZERO_SEED;

uint32_t used_words(uint32_t n_elems) { return (n_elems + 63) / 64; }

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

uint32_t elem_key_off(bool lru)
{
	return static_cast<uint32_t>(sizeof(htab_elem) + (lru ? sizeof(htab_lru_part) : 0));
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
	// No spares: a key that exists is rewritten in place, and an LRU map evicts.
	g.n_elems = g.max_entries;
	g.elem_size = static_cast<uint32_t>(elem_key_off(lru) + round_up(attr.key_size, 8) +
					    round_up(attr.value_size, 8) * (percpu ? nr_cpus : 1));
	// Homes: a group is the elements of one cache line when two or more fit, else one.
	// The pool gets room to spare so that most keys find a place in one of their two
	// homes: a quarter of max_entries where a group holds two or more (about 92% of a
	// full map's keys then sit at home), an eighth where it holds one (about 80%), as an
	// element that fills a line or more makes spare room dear and a lookup costs more
	// than one line anyway.
	g.n_groups = g.group_elems = 0;
	if (!percpu && !lru && !(attr.map_flags & uapi::BPF_F_NO_PREALLOC)) {
		g.group_elems = g.elem_size <= 32 ? 64 / g.elem_size : 1;
		uint32_t spare = g.max_entries / (g.group_elems > 1 ? 4 : 8);
		g.n_groups = (g.n_elems + spare + g.group_elems - 1) / g.group_elems;
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
		g.size = g.lru_off +
			 lru_size(g.n_elems, nr_cpus, attr.map_flags & uapi::BPF_F_NO_COMMON_LRU);
	}
	return g;
}

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

} // namespace

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
	h->key_off = elem_key_off(is_lru(map->map_type));
	h->key_off_value = h->key_off + static_cast<uint32_t>(round_up(map->key_size, 8));
	h->percpu = is_percpu(map->map_type);
	h->pcpu_size = static_cast<uint32_t>(round_up(map->value_size, 8));
	h->nr_cpus = map->nr_cpus;
	if (h->percpu)
		map->uvalue_size = h->pcpu_size * h->nr_cpus;
	h->is_lru = is_lru(map->map_type);
	if (h->is_lru)
		lru_attach(&h->lru, map->data + g.lru_off, h->n_elems, h->nr_cpus,
			   map->map_flags & uapi::BPF_F_NO_COMMON_LRU,
			   reinterpret_cast<char *>(&h->lru_part(h->elem(0))->lru_ref),
			   h->elem_size, htab_lru_delete_node, h);
	return 0;
}

void htab_map_init(bpf_map *map)
{
	htab_geometry g = geometry(attr_of(map), map->nr_cpus);
	map->hdr->max_entries = map->max_entries = g.max_entries;
	htab_ctl *c = map->ctl<htab_ctl>();
	c->seed = (map->map_flags & uapi::BPF_F_ZERO_SEED)
			  ? 0
			  : (static_cast<uint64_t>(std::random_device{}()) << 32) ^
				    std::random_device{}();
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
		used[n_words - 1].store(bits_past_end(n_words - 1, g.n_elems),
					std::memory_order_relaxed);
		full[n_full - 1].store(bits_past_end(n_full - 1, n_words),
				       std::memory_order_relaxed);
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

} // namespace bpfmap
