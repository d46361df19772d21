/*
 * The one list of map types bpfmap serves, like the kernel's include/linux/bpf_types.h.
 * Every per-type table is an expansion of it: the registry of ops tables
 * (src/core/registry.cc), the kernel's numbers (src/uapi/bpf_uapi.h), the C++ enum
 * (bpfmap/map.hpp) and the checks against the system's <linux/bpf.h>
 * (src/uapi/uapi_check.cc). A type added here appears in all of them, or the build fails.
 *
 *   BPFMAP_MAP_TYPE(name, kernel value, C++ enumerator, ops table)
 *
 * name is the kernel's BPF_MAP_TYPE_<name>. The C++ enumerator is MAP_<name> except for
 * STACK (<sys/mman.h> defines MAP_STACK as a macro). The ops table is the library's
 * internal name of the type's implementation; nothing outside the library uses it.
 * No include guard: the includer defines BPFMAP_MAP_TYPE, includes this, undefines it
 * (without it, this header is empty).
 */
#ifdef BPFMAP_MAP_TYPE
BPFMAP_MAP_TYPE(HASH, 1, MAP_HASH, htab_map_ops)
BPFMAP_MAP_TYPE(ARRAY, 2, MAP_ARRAY, array_map_ops)
BPFMAP_MAP_TYPE(PERCPU_HASH, 5, MAP_PERCPU_HASH, htab_percpu_map_ops)
BPFMAP_MAP_TYPE(PERCPU_ARRAY, 6, MAP_PERCPU_ARRAY, percpu_array_map_ops)
BPFMAP_MAP_TYPE(LRU_HASH, 9, MAP_LRU_HASH, htab_lru_map_ops)
BPFMAP_MAP_TYPE(LRU_PERCPU_HASH, 10, MAP_LRU_PERCPU_HASH, htab_lru_percpu_map_ops)
BPFMAP_MAP_TYPE(LPM_TRIE, 11, MAP_LPM_TRIE, trie_map_ops)
BPFMAP_MAP_TYPE(QUEUE, 22, MAP_QUEUE, queue_map_ops)
BPFMAP_MAP_TYPE(STACK, 23, MAP_BPF_STACK, stack_map_ops)
BPFMAP_MAP_TYPE(RINGBUF, 27, MAP_RINGBUF, ringbuf_map_ops)
BPFMAP_MAP_TYPE(BLOOM_FILTER, 30, MAP_BLOOM_FILTER, bloom_filter_map_ops)
BPFMAP_MAP_TYPE(USER_RINGBUF, 31, MAP_USER_RINGBUF, user_ringbuf_map_ops)
#endif
