// The program-side ABI: what an eBPF VM registers as map helpers. These calls skip the
// syscall layer's permission and frozen checks, as helpers do in the kernel.
#include <cerrno>

#include "bpfmap/bpfmap.h"
#include "core/percpu.h"
#include "core/rcu.h"
#include "maps/ringbuf.h"
#include "syscall/objtab.h"

using bpfmap::bpf_map;

namespace {
bpf_map *to_map(bpfmap_map *m) { return reinterpret_cast<bpf_map *>(m); }
} // namespace

extern "C" {

bpfmap_map *bpfmap_map_get(int fd)
{
	bpfmap::rcu_guard g;
	int err;
	bpf_map *map = bpfmap::map_from_fd(fd, &err);
	if (!map) {
		errno = -err;
		return nullptr;
	}
	if (!bpfmap::map_get(map)) {
		errno = EBADF; // closed while we looked
		return nullptr;
	}
	return reinterpret_cast<bpfmap_map *>(map);
}

void bpfmap_map_put(bpfmap_map *map)
{
	if (map)
		bpfmap::map_put(to_map(map));
}

void *bpfmap_map_lookup_elem(bpfmap_map *m, const void *key)
{
	bpf_map *map = to_map(m);
	return map->ops->map_lookup_elem(map, key);
}

void *bpfmap_map_lookup_percpu_elem(bpfmap_map *m, const void *key, uint32_t cpu)
{
	bpf_map *map = to_map(m);
	int slot = bpfmap::cpu_slot(cpu); // -1 for a CPU that is not possible
	if (!map->ops->map_lookup_percpu_elem || slot < 0 ||
	    static_cast<uint32_t>(slot) >= map->nr_cpus)
		return nullptr;
	return map->ops->map_lookup_percpu_elem(map, key, static_cast<uint32_t>(slot));
}

long bpfmap_map_lookup_multi(bpfmap_map *m, const void *keys, uint32_t n, void **out_ptrs)
{
	bpf_map *map = to_map(m);
	if (!map || (n && (!keys || !out_ptrs)))
		return -EINVAL;
	if (map->ops->map_lookup_multi)
		return map->ops->map_lookup_multi(map, keys, n, out_ptrs);
	long found = 0;
	const char *key = static_cast<const char *>(keys);
	for (uint32_t i = 0; i < n; i++, key += map->key_size) {
		out_ptrs[i] = map->ops->map_lookup_elem(map, key);
		found += out_ptrs[i] != nullptr;
	}
	return found;
}

uint32_t bpfmap_num_possible_cpus(void) { return bpfmap::num_possible_cpus(); }

long bpfmap_map_update_elem(bpfmap_map *m, const void *key, const void *value, uint64_t flags)
{
	bpf_map *map = to_map(m);
	if (map->map_flags & bpfmap::uapi::BPF_F_RDONLY_PROG)
		return -EACCES;
	return map->ops->map_update_elem(map, key, value, flags);
}

long bpfmap_map_delete_elem(bpfmap_map *m, const void *key)
{
	bpf_map *map = to_map(m);
	if (map->map_flags & bpfmap::uapi::BPF_F_RDONLY_PROG)
		return -EACCES;
	return map->ops->map_delete_elem(map, key);
}

long bpfmap_map_push_elem(bpfmap_map *m, const void *value, uint64_t flags)
{
	bpf_map *map = to_map(m);
	if (!map->ops->map_push_elem)
		return -EINVAL;
	if (map->map_flags & bpfmap::uapi::BPF_F_RDONLY_PROG)
		return -EACCES;
	return map->ops->map_push_elem(map, value, flags);
}

long bpfmap_map_pop_elem(bpfmap_map *m, void *value)
{
	bpf_map *map = to_map(m);
	if (!map->ops->map_pop_elem)
		return -EINVAL;
	if (map->map_flags & bpfmap::uapi::BPF_F_RDONLY_PROG)
		return -EACCES;
	return map->ops->map_pop_elem(map, value);
}

long bpfmap_map_peek_elem(bpfmap_map *m, void *value)
{
	bpf_map *map = to_map(m);
	if (!map->ops->map_peek_elem)
		return -EINVAL;
	return map->ops->map_peek_elem(map, value);
}

void *bpfmap_ringbuf_reserve(bpfmap_map *m, uint64_t size, uint64_t flags)
{
	bpf_map *map = to_map(m);
	return bpfmap::is_ringbuf(map) ? bpfmap::ringbuf_reserve(map, size, flags) : nullptr;
}

void bpfmap_ringbuf_submit(void *data, uint64_t flags)
{
	bpfmap::ringbuf_commit(data, flags, false);
}

void bpfmap_ringbuf_discard(void *data, uint64_t flags)
{
	bpfmap::ringbuf_commit(data, flags, true);
}

long bpfmap_ringbuf_output(bpfmap_map *m, const void *data, uint64_t size, uint64_t flags)
{
	bpf_map *map = to_map(m);
	return bpfmap::is_ringbuf(map) ? bpfmap::ringbuf_output(map, data, size, flags) : -EINVAL;
}

long bpfmap_user_ringbuf_drain(bpfmap_map *m, long (*callback)(const void *, uint64_t, void *),
			       void *ctx, uint64_t flags)
{
	bpf_map *map = to_map(m);
	if (!bpfmap::is_user_ringbuf(map) || !callback)
		return -EINVAL;
	return bpfmap::user_ringbuf_drain(map, callback, ctx, flags);
}

uint64_t bpfmap_ringbuf_query(bpfmap_map *m, uint64_t flags)
{
	bpf_map *map = to_map(m);
	// Either type, where the kernel's verifier takes a RINGBUF only.
	return bpfmap::is_ringbuf(map) || bpfmap::is_user_ringbuf(map)
		       ? bpfmap::ringbuf_query(map, flags)
		       : 0;
}

} // extern "C"
