// What map_bench's files share: the config a row is measured on, the ops, and the
// registration of one config's rows (map_bench.cc), which the sweep (map_sweep.cc) reuses
// with its own list of configs.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <linux/bpf.h>
#include <string>

#include "bpfmap/bpfmap.h"

namespace map_bench {

struct config {
	uint32_t type; // BPF_MAP_TYPE_{,PERCPU_}HASH or BPF_MAP_TYPE_{,PERCPU_}ARRAY
	uint32_t entries, key_size, value_size;

	bool hash() const
	{
		return type == BPF_MAP_TYPE_HASH || type == BPF_MAP_TYPE_PERCPU_HASH || lru();
	}
	bool lru() const
	{
		return type == BPF_MAP_TYPE_LRU_HASH || type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
	}
	bool percpu() const
	{
		return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
		       type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
	}
	// Bytes of a value in a syscall buffer.
	uint32_t value_bytes() const
	{
		return percpu() ? (value_size + 7) / 8 * 8 * bpfmap_num_possible_cpus()
				: value_size;
	}

	bool operator==(const config &o) const
	{
		return type == o.type && entries == o.entries && key_size == o.key_size &&
		       value_size == o.value_size;
	}
	std::string name() const
	{
		const char *t = type == BPF_MAP_TYPE_HASH	       ? "HASH"
				: type == BPF_MAP_TYPE_ARRAY	       ? "ARRAY"
				: type == BPF_MAP_TYPE_PERCPU_HASH     ? "PERCPU_HASH"
				: type == BPF_MAP_TYPE_LRU_HASH	       ? "LRU_HASH"
				: type == BPF_MAP_TYPE_LRU_PERCPU_HASH ? "LRU_PERCPU_HASH"
				: type == BPF_MAP_TYPE_QUEUE	       ? "QUEUE"
				: type == BPF_MAP_TYPE_STACK	       ? "STACK"
				: type == BPF_MAP_TYPE_BLOOM_FILTER    ? "BLOOM_FILTER"
				: type == BPF_MAP_TYPE_LPM_TRIE	       ? "LPM_TRIE"
								       : "PERCPU_ARRAY";
		return std::string(t) + "/" + std::to_string(entries) + "/k" +
		       std::to_string(key_size) + "v" + std::to_string(value_size);
	}
};

// lookup_fullattr: the copy-out lookup with the attr size sizeof(union bpf_attr) instead of
// libbpf's 32 bytes, so that the zero-tail check runs over the whole attr.
enum class op { lookup, lookup_fullattr, update, delete_reinsert, lookup_batch, insert_evict };

// Registers c's rows for each of ops, through every path that measures it; for HASH and
// LRU_HASH also the kernel's in-program row of a lookup or update among ops.
void register_config(const config &c, std::initializer_list<op> ops);

// With --sweep[=MAX] among the arguments (taken out of them): registers the sweep's rows,
// entries 10^3 up to MAX (default 10^7), instead of the usual ones, and returns true.
bool register_sweep(int *argc, char **argv);

} // namespace map_bench
