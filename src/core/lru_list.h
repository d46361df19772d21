// The LRU of BPF_MAP_TYPE_LRU_HASH and LRU_PERCPU_HASH: the kernel's bpf_lru_list, over a
// shared region.
//
// Not a textbook LRU, but the kernel's approximation, step for step, so that the same
// sequence of operations on one CPU evicts the same keys:
// - Common LRU: one global list set (active, inactive, free) under one lock, and per CPU a
//   local free list and a pending list (nodes handed out since the last flush). A CPU whose
//   local free list is empty flushes its pending nodes into the global lists (referenced
//   ones to active), rotates, and moves target_free nodes to its local free list, shrinking
//   the inactive list (evicting unreferenced nodes from its tail) when the global free list
//   runs short; only then does it steal from other CPUs' local lists.
// - Per-CPU LRU (BPF_F_NO_COMMON_LRU): each CPU owns max_entries / nr_cpus nodes in a list
//   set of its own; a pop rotates and, when that CPU's free list is empty, shrinks.
// - A lookup sets a node's reference bit with a plain store when it is clear, no lock.
//   The bit lives in the element (ref_base + idx * ref_stride), the cache line the lookup
//   has just read, not in the node.
//
// Nodes and list heads are indices into one array of links (heads after the n nodes), so
// the structure means the same in every process. Element n's node is node n: the hash
// table owns the elements and evicts through the del_from_htab callback.
//
// The region is untrusted: another process may write any word of it at any time. So the
// counts and places (n, the CPUs, where each list's head is) are this process's own, from
// lru_attach, and never read from the region; every link or cursor read from it is
// checked against them before it is followed, and every walk is bounded by the number of
// nodes (or of scans). Corrupt lists give wrong evictions, or no free node (lru_pop_free
// returns LRU_NIL, an update fails with ENOMEM), never an access outside the region or a
// walk without end. The lru_shared header and the heads kept in the list sets are
// written for a reader of the file and never read back.
//
// Lock order: a CPU's local lock, then the global lock, then (in del_from_htab) a bucket
// lock. A holder that dies can leave its lists half relinked. A node's type (and, for the
// local lists and per-CPU sets, its cpu) always names the list set it belongs to, and
// moves between list sets happen with both sets' locks held, so the next holder of a lock
// whose owner died rebuilds that lock's lists from the node types (see relink_*). What is
// lost is at most the node a dead process held between lists (a stolen node, or one popped
// for an update that never linked it): one element of capacity per such death. Walks also
// stop at any index that is not an element's node.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/lock.h"

namespace bpfmap {

inline constexpr uint32_t LRU_NIL = 0xffffffffu;

// The kernel's list types; the first three are the global (or per-CPU) lists.
enum lru_type : uint8_t {
	LRU_ACTIVE = 0,
	LRU_INACTIVE = 1,
	LRU_FREE = 2,
	LRU_LOCAL_FREE = 3,
	LRU_LOCAL_PENDING = 4,
	LRU_STOLEN = 5, // taken from another CPU's local list, not yet on this CPU's
};

struct lru_node {
	uint32_t prev, next;
	std::atomic<uint8_t> type;
	std::atomic<uint8_t> pending_free;
	uint8_t pad[2];
	uint16_t cpu; // the CPU whose local list (common) or list set (per-CPU) holds it
};
static_assert(sizeof(lru_node) == 16);

// One list set: the common LRU's global lists, or one CPU's lists in a per-CPU LRU.
struct alignas(64) lru_list {
	shared_lock lock;
	uint32_t head[3];  // indexed by LRU_ACTIVE, LRU_INACTIVE, LRU_FREE
	uint32_t count[2]; // active and inactive nodes
	uint32_t next_inactive_rotation;
};

// A CPU's local lists in a common LRU.
struct alignas(64) lru_local {
	shared_lock lock;
	uint32_t free_head, pending_head;
	std::atomic<uint32_t> next_steal; // read and written unlocked, as in the kernel
};

struct lru_shared {
	uint32_t n_elems; // nodes that stand for elements; list heads come after them
	uint32_t n_nodes;
	uint32_t nr_cpus;
	uint32_t percpu;
	uint32_t target_free; // nodes a CPU takes into its local free list at a time
	uint32_t nr_scans;    // nodes one rotation or shrink looks at
	uint64_t lists_off, locals_off, nodes_off; // from the start of this struct
};

// A process's handle on an LRU region: the layout, in private memory.
struct bpf_lru {
	lru_list *lists = nullptr;
	lru_local *locals = nullptr;
	lru_node *nodes = nullptr;
	uint32_t n_elems = 0, n_nodes = 0, nr_cpus = 0;
	uint32_t locals_head = 0; // CPU c's local free head is locals_head + 2c, pending one after
	uint32_t target_free = 0, nr_scans = 0;
	bool percpu = false;
	char *ref_base = nullptr; // element idx's reference bit: ref_base + idx * ref_stride
	size_t ref_stride = 0;
	// Unlink element idx from the hash table if it is still there (under its bucket lock).
	bool (*del_from_htab)(void *arg, uint32_t idx) = nullptr;
	void *del_arg = nullptr;
};

// Bytes an LRU of n nodes needs.
size_t lru_size(uint32_t n, uint32_t nr_cpus, bool percpu);
// Lay out a fresh region and put every node on a free list, as the kernel populates.
void lru_init(void *mem, uint32_t n, uint32_t nr_cpus, bool percpu);
// Attach to a region lru_init laid out with the same n, nr_cpus and percpu, lru_size(n,
// nr_cpus, percpu) bytes at mem: the caller's own values, which the handle keeps.
void lru_attach(bpf_lru *lru, void *mem, uint32_t n, uint32_t nr_cpus, bool percpu, char *ref_base,
		size_t ref_stride, bool (*del_from_htab)(void *, uint32_t), void *arg);

// A free node for a new element, evicting if need be: LRU_NIL when none can be had.
uint32_t lru_pop_free(bpf_lru *lru);
// Give back the node of an element that was unlinked, or never linked (idx < n; others
// are ignored).
void lru_push_free(bpf_lru *lru, uint32_t idx);

// Element idx's reference bit. A lookup sets it with a plain store when it is clear.
inline std::atomic<uint8_t> &lru_ref(const bpf_lru *lru, uint32_t idx)
{
	return *reinterpret_cast<std::atomic<uint8_t> *>(lru->ref_base + idx * lru->ref_stride);
}

} // namespace bpfmap
