// The map object and its ops table: the analogue of struct bpf_map and struct bpf_map_ops.
//
// A map's state is one shared region: the type's data first (so that the data of an
// mmapable array sits at file offset 0, as mmap() of a kernel map fd shows it), then one
// page holding struct map_header and the type's control block. Only plain data and offsets
// live in the region. struct bpf_map is the process-local handle over a mapped region;
// every process (and every fd of one process) that uses the same map shares one region.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <sys/types.h>

#include "uapi/bpf_uapi.h"

namespace bpfmap {

namespace btf {
struct type_ref;
}

inline constexpr uint64_t MAP_MAGIC = 0x3630504d41465042ULL; // "BPFAMP06"
inline constexpr size_t PAGE_SIZE = 4096;
inline constexpr size_t MAP_HEADER_SIZE = PAGE_SIZE;
inline constexpr size_t MAP_CTL_OFFSET = 256; // type control block inside the header page

inline constexpr size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

inline constexpr int32_t NUMA_NO_NODE = -1;

// The node a create attr asks for, as the kernel's bpf_map_attr_numa_node() reads it.
inline int32_t map_attr_numa_node(const uapi::map_create_attr &a)
{
	return (a.map_flags & uapi::BPF_F_NUMA_NODE) ? static_cast<int32_t>(a.numa_node)
						     : NUMA_NO_NODE;
}

// Lives in shared memory. Written once at create, before magic is published, except for
// the fields marked atomic.
struct map_header {
	std::atomic<uint64_t> magic;
	uint32_t map_type;
	uint32_t key_size;
	uint32_t value_size;
	uint32_t max_entries;
	uint32_t map_flags;
	uint32_t id;
	uint64_t map_extra;
	uint64_t data_size; // bytes before the header page
	uint32_t nr_cpus;   // value slots of a per-CPU map (possible CPUs at create)
	char name[uapi::OBJ_NAME_LEN];
	std::atomic<uint32_t> frozen;
	uint32_t btf_id; // the BTF object the map was created with, 0 for none
	uint32_t btf_key_type_id;
	uint32_t btf_value_type_id;
	// The creator's PID namespace (its nsfs device and inode): lock words and liveness
	// checks name threads by id, which means something only inside one namespace, so a
	// process of another namespace may not attach (see objtab.cc).
	uint64_t pid_ns_dev;
	uint64_t pid_ns_ino;
};
static_assert(sizeof(map_header) <= MAP_CTL_OFFSET);

struct bpf_map;
struct waitq;

// What a poller hands a map's map_poll op, as the kernel's poll table: the events it waits
// for, and room for the op to name the wait queue (core/waitq.h) a sleeper joins to hear
// when the answer may change (where the kernel's op calls poll_wait()).
struct map_poll_table {
	uint32_t events = 0; // EPOLL* bits the poller waits for
	waitq *queue = nullptr;
};

// One table per map family, written with designated initialisers at the end of the
// family's file, naming only the ops the family sets: every op defaults to null (which
// also keeps -Wmissing-field-initializers quiet about the others). Element ops return 0
// or a negative errno, as in the kernel; a null entry means the type does not serve the
// command.
struct bpf_map_ops {
	// Validate the type's own attributes (the generic ones are checked by the caller).
	int (*map_alloc_check)(const uapi::map_create_attr &attr) = nullptr;
	// Bytes of the data area the type needs; fails (E2BIG) where the kernel's allocation
	// of such a map fails, after the generic checks that follow alloc_check.
	int (*map_mem_size)(const uapi::map_create_attr &attr, size_t *size) = nullptr;
	// A new process-local handle of the family's own kind; no region yet.
	bpf_map *(*map_alloc)() = nullptr;
	// Lay out a fresh region (header filled, data zeroed).
	void (*map_init)(bpf_map *map) = nullptr;
	// Derive process-local pointers from a region that is already initialised. The
	// region is untrusted (another process may have written anything into it): the
	// generic header fields were validated and copied into the handle before this runs,
	// and the family validates whatever it reads of its own control block against them.
	// 0, or -EINVAL for a region that does not hold a valid map of the family.
	int (*map_attach)(bpf_map *map) = nullptr;

	// Program-side lookup: a pointer into the map's value (this CPU's, for a per-CPU map),
	// or nullptr.
	void *(*map_lookup_elem)(bpf_map *map, const void *key) = nullptr;
	// Program-side lookup of one CPU's value; per-CPU maps only. slot is the CPU's value
	// slot (core/percpu.h), already checked against map->nr_cpus by the caller.
	void *(*map_lookup_percpu_elem)(bpf_map *map, const void *key, uint32_t slot) = nullptr;
	// Program-side lookup of n keys packed key_size bytes apart: ptrs[i] is what
	// map_lookup_elem would return for key i; returns how many were found. For families
	// that can overlap the keys' cache misses. Null: the caller loops over map_lookup_elem.
	long (*map_lookup_multi)(bpf_map *map, const void *keys, uint32_t n, void **ptrs) = nullptr;
	// Syscall-side lookup: copy the value out in the syscall layout (bpf_map_value_size
	// bytes); never a torn value where the type promises.
	int (*map_copy_value)(bpf_map *map, const void *key, void *value, uint64_t flags) = nullptr;
	// Program-side update: value_size bytes (this CPU's value, for a per-CPU map).
	int (*map_update_elem)(bpf_map *map, const void *key, const void *value,
			       uint64_t flags) = nullptr;
	// Syscall-side update: bpf_map_value_size bytes. The same op as map_update_elem except
	// for per-CPU maps, where it writes every CPU's value.
	int (*map_update_value)(bpf_map *map, const void *key, const void *value,
				uint64_t flags) = nullptr;
	int (*map_delete_elem)(bpf_map *map, const void *key) = nullptr;
	int (*map_get_next_key)(bpf_map *map, const void *key, void *next_key) = nullptr;
	int (*map_lookup_and_delete_elem)(bpf_map *map, const void *key, void *value,
					  uint64_t flags) = nullptr;

	// Batch commands; null means ENOTSUPP, as in the kernel. attr is the caller's attr as
	// read; count and out_batch are written back through uattr, the caller's own copy.
	int (*map_lookup_batch)(bpf_map *map, const uapi::batch_attr &attr,
				uapi::batch_attr *uattr) = nullptr;
	int (*map_lookup_and_delete_batch)(bpf_map *map, const uapi::batch_attr &attr,
					   uapi::batch_attr *uattr) = nullptr;
	int (*map_update_batch)(bpf_map *map, const uapi::batch_attr &attr,
				uapi::batch_attr *uattr) = nullptr;
	int (*map_delete_batch)(bpf_map *map, const uapi::batch_attr &attr,
				uapi::batch_attr *uattr) = nullptr;

	// Queue, stack and bloom filter (later families).
	int (*map_push_elem)(bpf_map *map, const void *value, uint64_t flags) = nullptr;
	int (*map_pop_elem)(bpf_map *map, void *value) = nullptr;
	int (*map_peek_elem)(bpf_map *map, void *value) = nullptr;

	// True when the data area may be mapped by the user (BPF_F_MMAPABLE).
	bool (*map_mmapable)(const bpf_map *map) = nullptr;
	// A family whose fd maps in a layout of its own (the ring buffers; the kernel's
	// map_mmap op). map_mmap_check: after the generic checks, which pages a mapping may
	// cover and with which permissions (0 or -errno); map_mmap: make the mapping (as mmap()
	// returns). Null for the others: their data area maps as it is, where map_mmapable
	// allows it.
	int (*map_mmap_check)(const bpf_map *map, bool write, size_t len, size_t off) = nullptr;
	void *(*map_mmap)(bpf_map *map, void *addr, size_t len, int prot, int flags, int fd,
			  off_t off) = nullptr;
	// The readiness of the map's fd as epoll asks it (the kernel's map_poll op): the EPOLL*
	// events it is ready for now (the caller keeps those in pt->events; the op may skip
	// work for events not asked for), and in pt->queue the wait queue that is woken when
	// that may change. Null: not pollable; epoll_ctl() keeps the kernel's EPERM for the
	// fd's file (where a kernel map fd would report EPOLLERR).
	uint32_t (*map_poll)(bpf_map *map, map_poll_table *pt) = nullptr;
	// The family's own rules for a map created with BTF types (the kernel's map_check_btf
	// op); key is null for a map without a key type. Null: any sized key type, and a key
	// type is required.
	int (*map_check_btf)(const uapi::map_create_attr &attr, const btf::type_ref *key,
			     const btf::type_ref &value) = nullptr;
	// The SHA-256 of a frozen map's contents, for bpf_map_info.hash (arrays only in 6.18).
	void (*map_get_hash)(bpf_map *map, uint8_t *digest) = nullptr;
};

// Process-local handle. Families derive from it to cache pointers into the region.
struct bpf_map {
	virtual ~bpf_map() = default;

	const bpf_map_ops *ops = nullptr;
	map_header *hdr = nullptr;
	char *data = nullptr; // start of the region (the type's data area)
	size_t region_size = 0;

	// Copies of the immutable header fields, so hot paths read process-local memory.
	uint32_t map_type = 0;
	uint32_t key_size = 0;
	uint32_t value_size = 0;
	uint32_t max_entries = 0;
	uint32_t map_flags = 0;
	// Bytes of one value as syscall commands copy it: value_size, or for a per-CPU map
	// round_up(value_size, 8) for each of its nr_cpus slots (set by
	// the per-CPU family's attach).
	uint32_t uvalue_size = 0;
	uint32_t nr_cpus = 0; // value slots of a per-CPU map
	uint32_t id = 0;
	uint64_t map_extra = 0;

	// Identity of the region's file, so several fds of one map share this handle.
	dev_t dev = 0;
	ino_t ino = 0;

	// Process-local references: fd-table entries and handles given out by the C ABI.
	std::atomic<long> refcnt{0};

	template <typename T> T *ctl() const
	{
		return reinterpret_cast<T *>(reinterpret_cast<char *>(hdr) + MAP_CTL_OFFSET);
	}
	bool frozen() const { return hdr->frozen.load(std::memory_order_acquire) != 0; }
};

// The kernel's bpf_map_value_size(): what one value occupies in a syscall buffer.
inline uint32_t bpf_map_value_size(const bpf_map *map) { return map->uvalue_size; }
} // namespace bpfmap
