// BPF_MAP_TYPE_ARRAY.
//
// The data area is the values themselves, max_entries of them at a stride of
// round_up(value_size, 8), starting at offset 0 of the region, so that mmap() of the map
// fd of a BPF_F_MMAPABLE array shows exactly what the kernel's shows.
//
// Concurrency contract: as in the kernel, values are updated in place with no lock; a
// concurrent reader may see a value that is partly old and partly new. Lookups and
// updates never touch anything but the value itself.
#include <cerrno>
#include <cstring>

#include "core/map.h"
#include "core/registry.h"
#include "core/sha256.h"
#include "core/shmem.h"
#include "syscall/batch.h"

namespace bpfmap {
namespace {

constexpr uint32_t ARRAY_CREATE_FLAG_MASK = uapi::BPF_F_NUMA_NODE | uapi::BPF_F_MMAPABLE |
					    uapi::BPF_F_ACCESS_MASK | uapi::BPF_F_PRESERVE_ELEMS |
					    uapi::BPF_F_INNER_MAP;

struct bpf_array : bpf_map {
	uint32_t elem_size = 0;

	char *value_at(uint32_t index) const
	{
		return data + static_cast<size_t>(index) * elem_size;
	}
};

bpf_array *array_of(bpf_map *map) { return static_cast<bpf_array *>(map); }

uint32_t index_of_key(const void *key)
{
	uint32_t index;
	memcpy(&index, key, sizeof(index));
	return index;
}

int array_map_alloc_check(const uapi::map_create_attr &attr)
{
	if (attr.max_entries == 0 || attr.key_size != 4 || attr.value_size == 0 ||
	    (attr.map_flags & ~ARRAY_CREATE_FLAG_MASK))
		return -EINVAL;
	// BPF_F_PRESERVE_ELEMS belongs to perf event arrays.
	if (attr.map_flags & uapi::BPF_F_PRESERVE_ELEMS)
		return -EINVAL;
	if (attr.value_size > INT32_MAX)
		return -E2BIG;
	return 0;
}

int array_map_mem_size(const uapi::map_create_attr &attr, size_t *size)
{
	*size = static_cast<size_t>(attr.max_entries) * round_up(attr.value_size, 8);
	return 0;
}

bpf_map *array_map_alloc() { return new bpf_array; }

void array_map_init(bpf_map *) {} // a fresh region is already zero

void array_map_attach(bpf_map *map)
{
	array_of(map)->elem_size = static_cast<uint32_t>(round_up(map->value_size, 8));
}

void *array_map_lookup_elem(bpf_map *map, const void *key)
{
	uint32_t index = index_of_key(key);
	if (index >= map->max_entries)
		return nullptr;
	return array_of(map)->value_at(index);
}

int array_map_copy_value(bpf_map *map, const void *key, void *value, uint64_t)
{
	void *v = array_map_lookup_elem(map, key);
	if (!v)
		return -ENOENT;
	copy_from_shared(value, v, map->value_size);
	return 0;
}

int array_map_update_elem(bpf_map *map, const void *key, const void *value, uint64_t flags)
{
	if ((flags & ~uapi::BPF_F_LOCK) > uapi::BPF_EXIST)
		return -EINVAL;
	uint32_t index = index_of_key(key);
	if (index >= map->max_entries)
		return -E2BIG;
	if (flags & uapi::BPF_NOEXIST)
		return -EEXIST; // every element of an array always exists
	if (flags & uapi::BPF_F_LOCK)
		return -EINVAL; // no bpf_spin_lock in values yet
	copy_to_shared(array_of(map)->value_at(index), value, map->value_size);
	return 0;
}

int array_map_delete_elem(bpf_map *, const void *) { return -EINVAL; }

int array_map_get_next_key(bpf_map *map, const void *key, void *next_key)
{
	uint32_t index = key ? index_of_key(key) : UINT32_MAX;
	uint32_t next;
	if (index >= map->max_entries)
		next = 0;
	else if (index == map->max_entries - 1)
		return -ENOENT;
	else
		next = index + 1;
	memcpy(next_key, &next, sizeof(next));
	return 0;
}

bool array_map_mmapable(const bpf_map *map) { return map->map_flags & uapi::BPF_F_MMAPABLE; }

// Over every element with its padding to the 8-byte stride, as the kernel hashes it.
void array_map_get_hash(bpf_map *map, uint8_t *digest)
{
	sha256(map->data, static_cast<size_t>(map->max_entries) * array_of(map)->elem_size, digest);
}

} // namespace

const bpf_map_ops array_map_ops = {
	.map_alloc_check = array_map_alloc_check,
	.map_mem_size = array_map_mem_size,
	.map_alloc = array_map_alloc,
	.map_init = array_map_init,
	.map_attach = array_map_attach,
	.map_lookup_elem = array_map_lookup_elem,
	.map_copy_value = array_map_copy_value,
	.map_update_elem = array_map_update_elem,
	.map_delete_elem = array_map_delete_elem,
	.map_get_next_key = array_map_get_next_key,
	.map_lookup_and_delete_elem = nullptr,
	.map_lookup_batch = generic_map_lookup_batch,
	.map_lookup_and_delete_batch = nullptr,
	.map_update_batch = generic_map_update_batch,
	.map_delete_batch = nullptr,
	.map_push_elem = nullptr,
	.map_pop_elem = nullptr,
	.map_peek_elem = nullptr,
	.map_mmapable = array_map_mmapable,
	.map_get_hash = array_map_get_hash,
};

} // namespace bpfmap
