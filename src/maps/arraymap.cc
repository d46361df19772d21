// BPF_MAP_TYPE_ARRAY and BPF_MAP_TYPE_PERCPU_ARRAY.
//
// ARRAY: the data area is the values themselves, max_entries of them at a stride of
// round_up(value_size, 8), starting at offset 0 of the region, so that mmap() of the map
// fd of a BPF_F_MMAPABLE array shows exactly what the kernel's shows. As in the kernel,
// values are updated in place with no lock; a concurrent reader may see a value that is
// partly old and partly new.
//
// PERCPU_ARRAY: one area per CPU slot (see core/percpu.h), so that CPUs never share a
// cache line, then the locks:
//
//   [ CPU 0: max_entries x (slot header, value) ][ CPU 1: ... ] ... [ nr_cpus x STRIPES locks ]
//
// A thread can be preempted in the middle of writing its CPU's value and another thread
// scheduled on that CPU, which cannot happen to a BPF program in the kernel. So every
// write of a slot (program-side update, syscall update) holds one of that CPU's own
// stripe locks and keeps the slot's sequence count odd meanwhile; syscall reads retry on
// a changed count and never return a torn slot. Writes through the pointer a lookup
// returns are the caller's own, as in the kernel. A writer that dies mid-write leaves an
// odd count: the next holder of its (robust) lock makes that stripe's counts even again,
// and a reader that keeps seeing an odd count takes the lock to get there.
//
// The region is untrusted. Neither type has a control block: sizes, strides, the lock
// array's place and the number of CPU slots are the handle's own, from the validated
// header, and every index (a key, a batch cursor, a CPU slot, a lock stripe) is checked or
// reduced against them, never read from the region. What the region holds is values and
// the per-CPU sequence counts and locks; a count scribbled odd costs a reader READ_SPINS
// tries and then the lock, and the next write of the slot makes it even again.
#include <cerrno>
#include <cstring>

#include "core/batch.h"
#include "core/btf.h"
#include "core/lock.h"
#include "core/map.h"
#include "core/percpu.h"
#include "core/registry.h"
#include "core/sha256.h"
#include "core/shmem.h"

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
	bool percpu = attr.map_type == uapi::MAP_TYPE_PERCPU_ARRAY;
	if (attr.max_entries == 0 || attr.key_size != 4 || attr.value_size == 0 ||
	    (attr.map_flags & ~ARRAY_CREATE_FLAG_MASK) ||
	    (percpu && map_attr_numa_node(attr) != NUMA_NO_NODE))
		return -EINVAL;
	if (attr.map_type != uapi::MAP_TYPE_ARRAY &&
	    (attr.map_flags & (uapi::BPF_F_MMAPABLE | uapi::BPF_F_INNER_MAP)))
		return -EINVAL;
	// BPF_F_PRESERVE_ELEMS belongs to perf event arrays.
	if (attr.map_flags & uapi::BPF_F_PRESERVE_ELEMS)
		return -EINVAL;
	if (attr.value_size > INT32_MAX)
		return -E2BIG;
	if (percpu && round_up(attr.value_size, 8) > PCPU_MIN_UNIT_SIZE)
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

// Nothing of the region to check: the layout is the handle's alone.
int array_map_attach(bpf_map *map)
{
	array_of(map)->elem_size = static_cast<uint32_t>(round_up(map->value_size, 8));
	return 0;
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

// The program-side update's checks, in the kernel's order: 0 or an errno.
int array_update_check(bpf_map *map, uint32_t index, uint64_t flags)
{
	if ((flags & ~uapi::BPF_F_LOCK) > uapi::BPF_EXIST)
		return -EINVAL;
	if (index >= map->max_entries)
		return -E2BIG;
	if (flags & uapi::BPF_NOEXIST)
		return -EEXIST; // every element of an array always exists
	if (flags & uapi::BPF_F_LOCK)
		return -EINVAL; // no bpf_spin_lock in values yet
	return 0;
}

int array_map_update_elem(bpf_map *map, const void *key, const void *value, uint64_t flags)
{
	uint32_t index = index_of_key(key);
	int err = array_update_check(map, index, flags);
	if (err)
		return err;
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

// An array's key is a 32-bit integer; only a one-element map of a data section (a
// program's .data, .bss or .rodata) may go without a key type.
int array_map_check_btf(const uapi::map_create_attr &attr, const btf::type_ref *key,
			const btf::type_ref &value)
{
	if (!key) // 6.18 allows this to ARRAY only, not PERCPU_ARRAY
		return attr.map_type == uapi::MAP_TYPE_ARRAY && attr.max_entries == 1 &&
				       value.kind == btf::KIND_DATASEC
			       ? 0
			       : -EINVAL;
	if (key->kind != btf::KIND_INT)
		return -EINVAL;
	btf::int_data d = btf::int_of(*key);
	return d.bits == 32 && d.offset == 0 ? 0 : -EINVAL;
}

// Over every element with its padding to the 8-byte stride, as the kernel hashes it.
void array_map_get_hash(bpf_map *map, uint8_t *digest)
{
	sha256(map->data, static_cast<size_t>(map->max_entries) * array_of(map)->elem_size, digest);
}

// ---- per-CPU array --------------------------------------------------------------------

constexpr uint32_t PCPU_STRIPES = 16; // locks per CPU slot
constexpr int READ_SPINS = 1000;      // optimistic reads before a reader takes the lock

struct pcpu_slot {
	std::atomic<uint32_t> seq;
	uint32_t pad;
	// the value, round_up(value_size, 8) bytes
};

struct pcpu_geometry {
	uint32_t nr_cpus, slot_size, stripes;
	size_t area_size, locks_off, size;
};

pcpu_geometry pcpu_layout(uint32_t nr_cpus, uint32_t value_size, uint32_t max_entries)
{
	pcpu_geometry g;
	g.nr_cpus = nr_cpus;
	g.slot_size = static_cast<uint32_t>(sizeof(pcpu_slot) + round_up(value_size, 8));
	g.stripes = max_entries < PCPU_STRIPES ? max_entries : PCPU_STRIPES;
	g.area_size = round_up(static_cast<size_t>(max_entries) * g.slot_size, 64);
	g.locks_off = g.area_size * nr_cpus;
	g.size = g.locks_off + static_cast<size_t>(nr_cpus) * g.stripes * sizeof(shared_lock);
	return g;
}

struct bpf_percpu_array : bpf_map {
	pcpu_geometry g{};
	uint32_t elem_size = 0; // round_up(value_size, 8)
	shared_lock *locks = nullptr;

	pcpu_slot *slot(uint32_t index, uint32_t cpu) const
	{
		return reinterpret_cast<pcpu_slot *>(data + cpu * g.area_size +
						     static_cast<size_t>(index) * g.slot_size);
	}
	static char *value_of(pcpu_slot *s) { return reinterpret_cast<char *>(s + 1); }
	shared_lock &lock_of(uint32_t index, uint32_t cpu) const
	{
		return locks[cpu * g.stripes + index % g.stripes];
	}
};

bpf_percpu_array *pcpu_of(bpf_map *map) { return static_cast<bpf_percpu_array *>(map); }

// A writer died holding this stripe's lock, perhaps mid-write: even out its slots' counts.
// The value it was writing keeps whatever bytes it got to.
void pcpu_repair_stripe(bpf_percpu_array *a, uint32_t index, uint32_t cpu)
{
	for (uint32_t i = index % a->g.stripes; i < a->max_entries; i += a->g.stripes) {
		std::atomic<uint32_t> &seq = a->slot(i, cpu)->seq;
		uint32_t s = seq.load(std::memory_order_relaxed);
		if (s & 1)
			seq.store(s + 1, std::memory_order_release);
	}
}

class pcpu_slot_lock {
public:
	pcpu_slot_lock(bpf_percpu_array *a, uint32_t index, uint32_t cpu)
		: g_(a->lock_of(index, cpu))
	{
		if (g_.owner_died())
			pcpu_repair_stripe(a, index, cpu);
	}

private:
	lock_guard g_;
};

// Write n bytes of src into CPU slot cpu's value of element index. The count is odd while
// the value is written and even after, also when it was found odd (scribbled on).
void pcpu_write(bpf_percpu_array *a, uint32_t index, uint32_t cpu, const void *src, size_t n)
{
	pcpu_slot_lock l(a, index, cpu);
	pcpu_slot *s = a->slot(index, cpu);
	uint32_t odd = s->seq.load(std::memory_order_relaxed) | 1;
	s->seq.store(odd, std::memory_order_relaxed);
	std::atomic_thread_fence(std::memory_order_release);
	copy_to_shared(bpf_percpu_array::value_of(s), src, n);
	s->seq.store(odd + 1, std::memory_order_release);
}

// Copy CPU slot cpu's whole value (with its padding, as the kernel copies it) to dst.
void pcpu_read(bpf_percpu_array *a, uint32_t index, uint32_t cpu, void *dst)
{
	pcpu_slot *s = a->slot(index, cpu);
	for (int i = 0; i < READ_SPINS; i++) {
		uint32_t seq = s->seq.load(std::memory_order_acquire);
		if (seq & 1)
			continue;
		copy_from_shared(dst, bpf_percpu_array::value_of(s), a->elem_size);
		std::atomic_thread_fence(std::memory_order_acquire);
		if (s->seq.load(std::memory_order_relaxed) == seq)
			return;
	}
	// The writer is descheduled or dead: wait for it, or take over from it.
	pcpu_slot_lock l(a, index, cpu);
	copy_from_shared(dst, bpf_percpu_array::value_of(s), a->elem_size);
}

int percpu_array_map_mem_size(const uapi::map_create_attr &attr, size_t *size)
{
	*size = pcpu_layout(num_possible_cpus(), attr.value_size, attr.max_entries).size;
	return 0;
}

bpf_map *percpu_array_map_alloc() { return new bpf_percpu_array; }

void percpu_array_map_init(bpf_map *map)
{
	pcpu_geometry g = pcpu_layout(map->nr_cpus, map->value_size, map->max_entries);
	auto *locks = reinterpret_cast<shared_lock *>(map->data + g.locks_off);
	for (uint32_t i = 0; i < g.nr_cpus * g.stripes; i++)
		locks[i].init();
}

// The layout, the locks' place among it, is computed from the handle, never read.
int percpu_array_map_attach(bpf_map *map)
{
	bpf_percpu_array *a = pcpu_of(map);
	a->g = pcpu_layout(map->nr_cpus, map->value_size, map->max_entries);
	a->elem_size = static_cast<uint32_t>(round_up(map->value_size, 8));
	a->locks = reinterpret_cast<shared_lock *>(map->data + a->g.locks_off);
	map->uvalue_size = a->elem_size * a->g.nr_cpus;
	return 0;
}

void *percpu_array_map_lookup_percpu_elem(bpf_map *map, const void *key, uint32_t slot)
{
	uint32_t index = index_of_key(key);
	if (index >= map->max_entries)
		return nullptr;
	return bpf_percpu_array::value_of(pcpu_of(map)->slot(index, slot));
}

void *percpu_array_map_lookup_elem(bpf_map *map, const void *key)
{
	uint32_t slot = this_cpu_slot(pcpu_of(map)->g.nr_cpus);
	return percpu_array_map_lookup_percpu_elem(map, key, slot);
}

int percpu_array_map_copy_value(bpf_map *map, const void *key, void *value, uint64_t)
{
	bpf_percpu_array *a = pcpu_of(map);
	uint32_t index = index_of_key(key);
	if (index >= map->max_entries)
		return -ENOENT;
	for (uint32_t cpu = 0; cpu < a->g.nr_cpus; cpu++)
		pcpu_read(a, index, cpu, static_cast<char *>(value) + cpu * a->elem_size);
	return 0;
}

// Program side: this CPU's value only, value_size bytes (its padding is left as it is).
int percpu_array_map_update_elem(bpf_map *map, const void *key, const void *value, uint64_t flags)
{
	uint32_t index = index_of_key(key);
	int err = array_update_check(map, index, flags);
	if (err)
		return err;
	bpf_percpu_array *a = pcpu_of(map);
	pcpu_write(a, index, this_cpu_slot(a->g.nr_cpus), value, map->value_size);
	return 0;
}

// Syscall side: every CPU's value, padding included, as the kernel stores it.
int percpu_array_map_update_value(bpf_map *map, const void *key, const void *value, uint64_t flags)
{
	bpf_percpu_array *a = pcpu_of(map);
	uint32_t index = index_of_key(key);
	if (flags > uapi::BPF_EXIST)
		return -EINVAL;
	if (index >= map->max_entries)
		return -E2BIG;
	if (flags == uapi::BPF_NOEXIST)
		return -EEXIST;
	for (uint32_t cpu = 0; cpu < a->g.nr_cpus; cpu++)
		pcpu_write(a, index, cpu, static_cast<const char *>(value) + cpu * a->elem_size,
			   a->elem_size);
	return 0;
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
	.map_update_value = array_map_update_elem,
	.map_delete_elem = array_map_delete_elem,
	.map_get_next_key = array_map_get_next_key,
	.map_lookup_batch = generic_map_lookup_batch,
	.map_update_batch = generic_map_update_batch,
	.map_mmapable = array_map_mmapable,
	.map_check_btf = array_map_check_btf,
	.map_get_hash = array_map_get_hash,
};

const bpf_map_ops percpu_array_map_ops = {
	.map_alloc_check = array_map_alloc_check,
	.map_mem_size = percpu_array_map_mem_size,
	.map_alloc = percpu_array_map_alloc,
	.map_init = percpu_array_map_init,
	.map_attach = percpu_array_map_attach,
	.map_lookup_elem = percpu_array_map_lookup_elem,
	.map_lookup_percpu_elem = percpu_array_map_lookup_percpu_elem,
	.map_copy_value = percpu_array_map_copy_value,
	.map_update_elem = percpu_array_map_update_elem,
	.map_update_value = percpu_array_map_update_value,
	.map_delete_elem = array_map_delete_elem,
	.map_get_next_key = array_map_get_next_key,
	.map_lookup_batch = generic_map_lookup_batch,
	.map_update_batch = generic_map_update_batch,
	.map_check_btf = array_map_check_btf,
};

} // namespace bpfmap
