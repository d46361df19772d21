// The one list of map types bpfmap serves, like include/linux/bpf_types.h: every per-type
// table is an expansion of this list; no switch over map types exists anywhere else.
//
//   BPF_MAP_TYPE(type constant, ops table)
BPF_MAP_TYPE(MAP_TYPE_HASH, htab_map_ops)
BPF_MAP_TYPE(MAP_TYPE_ARRAY, array_map_ops)
BPF_MAP_TYPE(MAP_TYPE_PERCPU_HASH, htab_percpu_map_ops)
BPF_MAP_TYPE(MAP_TYPE_PERCPU_ARRAY, percpu_array_map_ops)
BPF_MAP_TYPE(MAP_TYPE_LRU_HASH, htab_lru_map_ops)
BPF_MAP_TYPE(MAP_TYPE_LRU_PERCPU_HASH, htab_lru_percpu_map_ops)
BPF_MAP_TYPE(MAP_TYPE_LPM_TRIE, trie_map_ops)
BPF_MAP_TYPE(MAP_TYPE_QUEUE, queue_map_ops)
BPF_MAP_TYPE(MAP_TYPE_STACK, stack_map_ops)
BPF_MAP_TYPE(MAP_TYPE_BLOOM_FILTER, bloom_filter_map_ops)
BPF_MAP_TYPE(MAP_TYPE_RINGBUF, ringbuf_map_ops)
BPF_MAP_TYPE(MAP_TYPE_USER_RINGBUF, user_ringbuf_map_ops)
