// BPF_MAP_TYPE_LPM_TRIE.
//
// The kernel's trie, node for node: a binary trie with path compression, one node per
// stored prefix plus intermediate nodes (flagged, valueless) where two subtrees part, every
// intermediate node with exactly two children. The same inserts and deletes give the same
// shape as in the kernel whatever their order, so get_next_key (a post-order walk: more
// specific prefixes first) returns keys in the kernel's order. Keys are stored as given,
// bits past the prefix included, as the kernel stores and returns them.
//
// Layout: the data area is a jump table, then a pool of nodes ([header][data, to 8][value,
// to 8]), indexed by u32; the control block holds the root, the lock and the counters. The
// pool has room for every live node (max_entries prefixes, fewer intermediates) plus slack,
// and the region is committed lazily (BPF_F_NO_PREALLOC is required, as in the kernel).
//
// The jump table is what makes lookups fast; the trie alone is the kernel's. It has one
// entry per value of a key's first TB bits (TB up to 16). Walking down to depth TB takes
// the same path for every key that agrees on those bits and is at least TB bits long, so
// the entry records where that walk ends: the deepest stored prefix shorter than TB that
// it passed (the match so far) and the first node it reached whose prefix is TB or longer
// (where the walk goes on). A lookup reads one entry and walks only the rest. Writers
// rewrite the entries below the slot they changed before they let go of the lock; a change
// below a node of length TB or more touches none. While entries are being rewritten
// table_seq is odd and lookups walk from the root, so a writer that dies halfway leaves
// lookups slower, never wrong, until the next writer rebuilds the table.
//
// Concurrency, like the kernel's RCU trie:
// - Writers (update, delete) hold the one trie lock. Every change is published with one
//   store of a child index (or of the intermediate flag): a reader sees the trie before or
//   after it, never between.
// - Readers take no lock. A node that leaves the trie keeps its links and data, as an RCU
//   reader would still see them, and goes to the tail of a FIFO free list, so it is reused
//   as late as possible. A writer bumps reuse_seq before it rewrites a node that was ever
//   reachable; a reader reads reuse_seq before and after its walk and walks again if it
//   moved, so it never acts on a node that was rewritten under it.
// - A replace (an update of a prefix that is stored) rewrites the node's key and value in
//   place, with reuse_seq odd meanwhile (a reader that finds it odd walks again): the trie
//   and the jump table do not change, which is what makes a replace cheap. In the kernel a
//   replace publishes a new node. A pointer that a program-side lookup returned reads
//   whatever its prefix's value is now, and stays in the node until it is reused after a
//   delete, which the FIFO puts off for at least (pool size - live nodes) frees.
// - A writer that dies holding the lock leaves a consistent trie; what may be off is the
//   entry count and the free list (a node it took and did not link). The next holder sees
//   the owner died and rebuilds both from the nodes reachable from the root.
//
// The region is untrusted: any process that can write the file may scribble on it. So
// every node index read from it (the root, a child link, a jump table entry, a free list
// link, the bump mark) is checked against the node count this process computed at attach
// before it is used, and every walk is bounded: a path down the trie by max_prefixlen + 1
// nodes (prefix lengths grow along a path), a jump table rewrite by its width, the audit by
// marking each node once, a lock-free read by READ_TRIES passes before it takes the lock.
// get_next_key hands out only nodes that their own key's walk reaches, so that a walk from
// key to key (a batch lookup) always moves forward. A trie found corrupt gives EFAULT to
// writers and to get_next_key, and lookups find nothing (ENOENT) or a wrong node; nothing
// reads or writes outside the region, and no call spins. (The trie lock is a word in the
// region too; what a scribbled lock word does is core/lock.cc's to bound.)
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include "core/batch.h"
#include "core/btf.h"
#include "core/lock.h"
#include "core/map.h"
#include "core/registry.h"
#include "core/shmem.h"

namespace bpfmap {
namespace {

constexpr uint32_t NIL = 0xffffffffu;
constexpr uint8_t LPM_FLAG_IM = 1; // intermediate node: no value, never returned
constexpr uint32_t LPM_DATA_SIZE_MIN = 1, LPM_DATA_SIZE_MAX = 256;
constexpr uint32_t LPM_KEY_HEADER = 4; // struct bpf_lpm_trie_key_u8: u32 prefixlen, data[]
// The kernel's value limit: a node (24-byte header, the largest data, the value) must fit
// one kmalloc (4 MiB).
constexpr uint32_t LPM_VAL_SIZE_MAX = (1u << 22) - LPM_DATA_SIZE_MAX - 24;
constexpr uint32_t LPM_CREATE_FLAG_MASK =
	uapi::BPF_F_NO_PREALLOC | uapi::BPF_F_NUMA_NODE | uapi::BPF_F_ACCESS_MASK;
// The region is only reserved, not committed, but must fit the address space.
constexpr uint64_t MAX_POOL_BYTES = 1ull << 45;
// Lock-free passes of a read before it walks once more under the trie lock (see read_stable).
constexpr int READ_TRIES = 64;

struct lpm_node {
	std::atomic<uint32_t> child[2];
	std::atomic<uint16_t> prefixlen;
	std::atomic<uint8_t> flags;
	uint8_t pad;
	uint32_t next_free; // FIFO link while free; written under the lock only
			    // data (data_size bytes, padded to 8), then the value
};
static_assert(sizeof(lpm_node) == 16);

struct lpm_ctl {
	shared_lock lock;
	std::atomic<uint32_t> root;
	std::atomic<uint32_t> reuse_seq;
	std::atomic<uint32_t> table_seq; // odd: jump table entries being rewritten
	uint32_t n_entries;
	uint32_t n_nodes; // checked at attach; the handle's copy is the one used
	uint32_t bump;	  // nodes [0, bump) have been handed out at least once
	uint32_t free_head, free_tail;
};

struct lpm_geometry {
	uint32_t data_size, value_off, node_size, n_nodes;
	uint32_t table_bits; // TB: the jump table has 2^TB entries
	size_t pool_off;     // the pool starts after the table
};

uint32_t ceil_log2(uint64_t v)
{
	return v <= 1 ? 0 : 64 - static_cast<uint32_t>(__builtin_clzll(v - 1));
}

lpm_geometry lpm_layout(uint32_t key_size, uint32_t value_size, uint32_t max_entries)
{
	lpm_geometry g;
	g.data_size = key_size - LPM_KEY_HEADER;
	g.value_off = static_cast<uint32_t>(sizeof(lpm_node) + round_up(g.data_size, 8));
	g.node_size = static_cast<uint32_t>(round_up(g.value_off + value_size, 8));
	// Live nodes: max_entries prefixes, max_entries - 1 intermediates; then slack, the
	// least number of frees before a node is reused.
	uint64_t want = 2ull * max_entries + 2 + max_entries / 8 + 64;
	uint64_t fit = MAX_POOL_BYTES / g.node_size;
	g.n_nodes = static_cast<uint32_t>(std::min<uint64_t>({want, fit, NIL - 1}));
	// About four entries per prefix, at least 256, at most 65536 (512 KiB).
	g.table_bits = std::min({16u, g.data_size * 8, std::max(8u, ceil_log2(max_entries) + 2)});
	g.pool_off = round_up(sizeof(uint64_t) << g.table_bits, 64);
	return g;
}

// A jump table entry: (cont + 1) << 32 | (best + 1), so that zero (a page not yet
// touched) means NIL, NIL: what an empty trie needs.
using jump_entry = std::atomic<uint64_t>;

struct bpf_lpm_trie : bpf_map {
	lpm_ctl *c = nullptr;
	char *pool = nullptr;
	jump_entry *table = nullptr;
	uint32_t data_size = 0, max_prefixlen = 0, value_off = 0, node_size = 0, n_nodes = 0;
	uint32_t words = 0; // data_size in 64-bit words, rounded up
	uint32_t table_bits = 0;

	lpm_node *node(uint32_t i) const
	{
		return reinterpret_cast<lpm_node *>(pool + static_cast<size_t>(i) * node_size);
	}
	char *data_of(uint32_t i) const { return reinterpret_cast<char *>(node(i) + 1); }
	char *value_of(uint32_t i) const { return reinterpret_cast<char *>(node(i)) + value_off; }
};

bpf_lpm_trie *trie_of(bpf_map *map) { return static_cast<bpf_lpm_trie *>(map); }

// A key as the walks use it: its prefix length and its data in whole 64-bit words, zero
// past data_size, so that matching reads words on both sides.
struct lpm_key {
	uint32_t prefixlen;
	uint64_t w[LPM_DATA_SIZE_MAX / 8];

	lpm_key(const bpf_lpm_trie *t, const void *key)
	{
		memcpy(&prefixlen, key, 4);
		memset(w, 0, t->words * 8);
		memcpy(w, static_cast<const char *>(key) + LPM_KEY_HEADER, t->data_size);
	}
	const uint8_t *bytes() const { return reinterpret_cast<const uint8_t *>(w); }
	// The first `bits` bits of the data, as an integer (bits <= 64).
	uint64_t top(uint32_t bits) const { return __builtin_bswap64(w[0]) >> (64 - bits); }
};

// One read of a plain word of the control block or a node, so that the value checked is the
// value used even if another process rewrites the word in between.
uint32_t load_once(const uint32_t &word) { return __atomic_load_n(&word, __ATOMIC_RELAXED); }

// Bit index of data, most significant bit of byte 0 first (data is big endian).
int extract_bit(const uint8_t *data, uint32_t index)
{
	return (data[index / 8] >> (7 - index % 8)) & 1;
}

// Node words are read while a writer may be rewriting the node (the walk then retries).
uint64_t node_word(const char *data, uint32_t i)
{
	return __atomic_load_n(reinterpret_cast<const uint64_t *>(data) + i, __ATOMIC_RELAXED);
}

// How many leading bits of node and key agree, at most min(both prefix lengths). Bytes
// past data_size in the node's last word belong to the value: any difference there lies
// past max_prefixlen, so past the limit.
uint32_t longest_prefix_match(const bpf_lpm_trie *t, uint32_t n, const lpm_key &key)
{
	uint32_t limit = std::min<uint32_t>(t->node(n)->prefixlen.load(std::memory_order_relaxed),
					    key.prefixlen);
	const char *data = t->data_of(n);
	for (uint32_t i = 0; i * 64 < limit; i++) {
		uint64_t diff = __builtin_bswap64(node_word(data, i) ^ key.w[i]);
		if (diff)
			return std::min(limit,
					i * 64 + static_cast<uint32_t>(__builtin_clzll(diff)));
	}
	return limit;
}

// ---- lock-free reads ---------------------------------------------------------------------

// Run walk() until no node was rewritten while it ran. walk returns false when it saw
// something only a rewrite or a corrupt region can explain (an index out of range, a path
// too long). Writers that keep reusing nodes, or a process that keeps writing reuse_seq,
// could keep a reader walking for ever: false after READ_TRIES passes, and the caller
// walks once more with read_locked().
template <typename F> bool read_stable(const bpf_lpm_trie *t, F &&walk)
{
	for (int i = 0; i < READ_TRIES; i++) {
		uint32_t s = t->c->reuse_seq.load(std::memory_order_acquire);
		if (s & 1)
			continue; // a value is being rewritten in place
		bool sane = walk();
		std::atomic_thread_fence(std::memory_order_acquire);
		if (__builtin_expect(t->c->reuse_seq.load(std::memory_order_relaxed) == s && sane,
				     1))
			return true;
	}
	return false;
}

// A walk under the trie lock, where no writer moves anything: one that is still not sane
// met a corrupt trie (false).
template <typename F> bool read_locked(bpf_lpm_trie *t, F &&walk);

uint32_t child_of(const bpf_lpm_trie *t, uint32_t n, int bit)
{
	return t->node(n)->child[bit].load(std::memory_order_acquire);
}

bool is_im(const bpf_lpm_trie *t, uint32_t n)
{
	return t->node(n)->flags.load(std::memory_order_relaxed) & LPM_FLAG_IM;
}

uint32_t prefixlen_of(const bpf_lpm_trie *t, uint32_t n)
{
	return t->node(n)->prefixlen.load(std::memory_order_relaxed);
}

// The longest stored prefix that matches key, or NIL; one pass, unvalidated. Keys of TB
// bits or more start where their jump table entry says.
[[gnu::always_inline]] inline bool lookup_walk(const bpf_lpm_trie *t, const lpm_key &key,
					       uint32_t *found)
{
	uint32_t n;
	if (key.prefixlen >= t->table_bits &&
	    !(t->c->table_seq.load(std::memory_order_acquire) & 1)) {
		uint64_t e = t->table[key.top(t->table_bits)].load(std::memory_order_acquire);
		*found = static_cast<uint32_t>(e) - 1;
		n = static_cast<uint32_t>(e >> 32) - 1;
		if (*found != NIL && *found >= t->n_nodes)
			return false;
	} else {
		*found = NIL;
		n = t->c->root.load(std::memory_order_acquire);
	}
	for (uint32_t steps = 0; n != NIL; steps++) {
		if (n >= t->n_nodes || steps > t->max_prefixlen + 1)
			return false;
		uint32_t matchlen = longest_prefix_match(t, n, key);
		if (matchlen == t->max_prefixlen) {
			*found = n;
			break;
		}
		uint32_t plen = prefixlen_of(t, n);
		if (matchlen < plen)
			break;
		if (!is_im(t, n))
			*found = n;
		n = child_of(t, n, extract_bit(key.bytes(), plen));
	}
	return true;
}

// One pass of a lookup: the match into *found and its value (if any) into value_out.
[[gnu::always_inline]] inline bool lookup_copy(const bpf_lpm_trie *t, const lpm_key &key,
					       void *value_out, uint32_t *found)
{
	bool sane = lookup_walk(t, key, found);
	if (sane && *found != NIL && value_out)
		copy_from_shared(value_out, t->value_of(*found), t->value_size);
	return sane;
}

// A lookup whose lock-free passes gave up. Out of line, with its own result, so that the
// lock-free pass keeps everything in registers.
[[gnu::noinline, gnu::cold]] uint32_t trie_lookup_locked(bpf_lpm_trie *t, const lpm_key &key,
							 void *value_out)
{
	uint32_t found = NIL;
	return read_locked(t, [&] { return lookup_copy(t, key, value_out, &found); }) ? found : NIL;
}

// The longest stored prefix matching ukey, its value copied to value_out; NIL for none (or
// for a corrupt trie).
uint32_t trie_lookup(bpf_lpm_trie *t, const void *ukey, void *value_out)
{
	lpm_key key(t, ukey);
	if (key.prefixlen > t->max_prefixlen)
		return NIL;
	uint32_t found = NIL;
	if (__builtin_expect(read_stable(t, [&] { return lookup_copy(t, key, value_out, &found); }),
			     1))
		return found;
	return trie_lookup_locked(t, key, value_out);
}

void *trie_map_lookup_elem(bpf_map *map, const void *key)
{
	bpf_lpm_trie *t = trie_of(map);
	uint32_t n = trie_lookup(t, key, nullptr);
	return n == NIL ? nullptr : t->value_of(n);
}

int trie_map_copy_value(bpf_map *map, const void *key, void *value, uint64_t)
{
	return trie_lookup(trie_of(map), key, value) == NIL ? -ENOENT : 0;
}

// A path down the trie from the root, as a walk took it. No sound path holds more than
// max_prefixlen + 1 nodes (prefix lengths grow along it).
struct lpm_path {
	uint32_t len = 0;
	uint32_t node[LPM_DATA_SIZE_MAX * 8 + 1];

	// False for an index out of range or a path too long.
	bool push(const bpf_lpm_trie *t, uint32_t n)
	{
		if (n >= t->n_nodes || len > t->max_prefixlen)
			return false;
		node[len++] = n;
		return true;
	}
};

// The first node of the post-order walk of the subtree at n that is not intermediate; the
// nodes down to it are added to path.
uint32_t leftmost(const bpf_lpm_trie *t, uint32_t n, lpm_path *path, bool *sane)
{
	uint32_t found = NIL, found_len = path->len;
	while (n != NIL) {
		if (!path->push(t, n)) {
			*sane = false;
			return NIL;
		}
		if (is_im(t, n)) {
			n = child_of(t, n, 0);
		} else {
			found = n;
			found_len = path->len;
			uint32_t next = child_of(t, n, 0);
			n = next != NIL ? next : child_of(t, n, 1);
		}
	}
	path->len = found_len;
	return found;
}

// The kernel's successor rule: the node that follows key's exact node in post-order; for
// a missing or invalid key, the first node of the whole walk. path: how it was reached.
bool next_key_walk(const bpf_lpm_trie *t, const void *ukey, uint32_t *next, lpm_path *path)
{
	*next = NIL;
	path->len = 0;
	uint32_t root = t->c->root.load(std::memory_order_acquire);
	bool sane = true;
	if (root == NIL)
		return true;
	if (!ukey) {
		*next = leftmost(t, root, path, &sane);
		return sane;
	}
	lpm_key key(t, ukey);
	if (key.prefixlen > t->max_prefixlen) {
		*next = leftmost(t, root, path, &sane);
		return sane;
	}
	uint32_t n = root, matchlen = 0;
	while (n != NIL) {
		if (!path->push(t, n))
			return false;
		matchlen = longest_prefix_match(t, n, key);
		uint32_t plen = prefixlen_of(t, n);
		if (plen != matchlen || plen == key.prefixlen)
			break;
		n = child_of(t, n, extract_bit(key.bytes(), plen));
	}
	if (n == NIL || prefixlen_of(t, n) != matchlen || is_im(t, n)) {
		path->len = 0;
		*next = leftmost(t, root, path, &sane);
		return sane;
	}
	// Up from the exact node; the path is cut back to each parent in turn.
	for (uint32_t sp = path->len - 1; sp > 0; sp--) {
		uint32_t parent = path->node[sp - 1];
		path->len = sp;
		if (child_of(t, parent, 0) == n) {
			uint32_t right = child_of(t, parent, 1);
			if (right != NIL) {
				*next = leftmost(t, right, path, &sane);
				return sane;
			}
		}
		if (!is_im(t, parent)) {
			*next = parent;
			return true;
		}
		n = parent;
	}
	return true;
}

// Whether the walk of key (a node's own key) from the path's root goes down path and stops
// at its last node, as it does for every node of a sound trie, through no node whose two
// children are one (so that the same nodes mean the same turns). get_next_key hands out no
// other node: then each node it gives has its own place in post-order, later than the place
// of the node it was given, and a walk from key to key (a batch lookup) ends even on a
// scribbled trie, after at most one step per node.
bool on_its_own_path(const bpf_lpm_trie *t, const lpm_path &path, const lpm_key &key)
{
	uint32_t n = path.len ? path.node[0] : NIL;
	for (uint32_t i = 0; i < path.len; i++) {
		if (n != path.node[i])
			return false;
		uint32_t plen = prefixlen_of(t, n);
		if (longest_prefix_match(t, n, key) != plen)
			return false;
		if (i + 1 == path.len)
			return plen == key.prefixlen;
		uint32_t left = child_of(t, n, 0), right = child_of(t, n, 1);
		if (plen >= key.prefixlen || left == right)
			return false;
		n = extract_bit(key.bytes(), plen) ? right : left;
	}
	return false;
}

int trie_map_get_next_key(bpf_map *map, const void *key, void *next_key)
{
	bpf_lpm_trie *t = trie_of(map);
	uint32_t next = NIL;
	auto *out = static_cast<char *>(next_key);
	lpm_path path;
	auto walk = [&] {
		if (!next_key_walk(t, key, &next, &path))
			return false;
		if (next == NIL)
			return true;
		// A key that no lookup or update would take is not one the trie holds.
		uint32_t plen = prefixlen_of(t, next);
		if (plen > t->max_prefixlen)
			return false;
		memcpy(out, &plen, 4);
		copy_from_shared(out + LPM_KEY_HEADER, t->data_of(next), t->data_size);
		return on_its_own_path(t, path, lpm_key(t, out));
	};
	if (!read_stable(t, walk) && !read_locked(t, walk))
		return -EFAULT;
	return next == NIL ? -ENOENT : 0;
}

// ---- writers (trie lock held) ---------------------------------------------------------

// Whether n may be the depth-th node of a path down the trie (the root is depth 0). Prefix
// lengths grow along a path, so no path holds more than max_prefixlen + 1 nodes.
bool node_ok(const bpf_lpm_trie *t, uint32_t n, uint32_t depth)
{
	return __builtin_expect(n < t->n_nodes && depth <= t->max_prefixlen, 1);
}

// A node that left the trie, to the tail of the free list. It keeps its links and data
// until it is reused. A tail out of range (a scribbled list) starts the list anew; the
// nodes it held are lost to allocation until an audit finds them.
void free_node(bpf_lpm_trie *t, uint32_t n)
{
	lpm_ctl *c = t->c;
	t->node(n)->next_free = NIL;
	uint32_t tail = load_once(c->free_tail);
	if (tail >= t->n_nodes)
		c->free_head = n;
	else
		t->node(tail)->next_free = n;
	c->free_tail = n;
}

// ---- the jump table (trie lock held) ---------------------------------------------------

// Entries lo .. lo + 2^(TB-q) - 1: the walk of their keys ends with best matched so far
// and goes on at cont.
void set_entries(bpf_lpm_trie *t, uint64_t lo, uint32_t q, uint32_t best, uint32_t cont)
{
	uint64_t e = static_cast<uint64_t>(cont + 1) << 32 | static_cast<uint32_t>(best + 1);
	for (uint64_t i = 0, count = 1ull << (t->table_bits - q); i < count; i++)
		t->table[lo + i].store(e, std::memory_order_release);
}

// The first TB bits of node n's data.
uint64_t node_top(const bpf_lpm_trie *t, uint32_t n)
{
	return __builtin_bswap64(node_word(t->data_of(n), 0)) >> (64 - t->table_bits);
}

// Rewrite the entries whose first q bits are lo's, given that their walk has reached n with
// best matched so far. A node shorter than TB is decided by the first TB bits alone: one
// that reads a bit past q splits the range in two. In a sound trie a pass moves down at
// most TB nodes (all shorter than TB, each longer than the last) and splits at most TB
// times; false when it would do more or meets an index out of range (a corrupt trie).
bool fill_entries(bpf_lpm_trie *t, uint32_t n, uint32_t best, uint64_t lo, uint32_t q)
{
	const uint32_t tb = t->table_bits;
	for (uint32_t steps = 0; n != NIL; steps++) {
		if (n >= t->n_nodes || steps > 2 * tb)
			return false;
		uint32_t p = prefixlen_of(t, n);
		if (p >= tb)
			break;
		if (q <= p) {
			if (!fill_entries(t, n, best, lo, q + 1))
				return false;
			lo |= 1ull << (tb - q - 1);
			q++;
			continue;
		}
		if ((node_top(t, n) ^ lo) >> (tb - p)) {
			n = NIL; // the walk stops here: n does not match
			break;
		}
		if (!is_im(t, n))
			best = n;
		n = child_of(t, n, static_cast<int>(lo >> (tb - p - 1)) & 1);
	}
	set_entries(t, lo, q, best, n);
	return true;
}

// A change in the slot under parent (NIL: the root) on key's path: publish() makes it,
// then the entries of every key whose walk passes that slot before depth TB are rewritten.
// A short prefix near the root covers many entries (the root, all of them); a change below
// depth TB, none. table_seq stays odd when the rewrite meets a corrupt trie, so lookups
// walk from the root; a rewrite that finds it odd (left so by that, or by a writer that
// died) rewrites the whole table.
template <typename F>
void change_slot(bpf_lpm_trie *t, uint32_t parent, const lpm_key &key, F &&publish)
{
	const uint32_t tb = t->table_bits;
	uint32_t q = 0;
	if (parent != NIL) {
		uint32_t p = prefixlen_of(t, parent);
		if (p >= tb) {
			publish();
			return;
		}
		q = p + 1;
	}
	std::atomic<uint32_t> &seq = t->c->table_seq;
	uint32_t s = seq.load(std::memory_order_relaxed);
	if (s & 1)
		q = 0;
	seq.store(s | 1, std::memory_order_relaxed);
	publish();
	uint64_t lo = q ? key.top(q) << (tb - q) : 0;
	if (fill_entries(t, t->c->root.load(std::memory_order_relaxed), NIL, lo, q))
		seq.store((s | 1) + 1, std::memory_order_release);
}

// reuse_seq is even while no value is being rewritten. A writer (the lock held) moves it
// to the first even count past the one it finds: an odd one was left by a writer that died
// mid-rewrite, or scribbled, and is not to be waited out.
uint32_t reuse_seq_next_even(bpf_lpm_trie *t)
{
	return (t->c->reuse_seq.load(std::memory_order_relaxed) + 2) & ~1u;
}

// Rebuild the entry count and the free list from what the root reaches: after a writer
// died holding the lock, a node it had taken may be in neither. Each node is marked once,
// so a scribbled link (a cycle, a node reached twice) cannot keep it going.
void trie_audit(bpf_lpm_trie *t)
{
	lpm_ctl *c = t->c;
	uint32_t bump = std::min(load_once(c->bump), t->n_nodes);
	c->bump = bump;
	std::vector<bool> live(bump, false);
	std::vector<uint32_t> todo;
	uint32_t entries = 0;
	if (uint32_t r = c->root.load(std::memory_order_relaxed); r != NIL)
		todo.push_back(r);
	while (!todo.empty()) {
		uint32_t n = todo.back();
		todo.pop_back();
		if (n >= bump || live[n])
			continue;
		live[n] = true;
		entries += !is_im(t, n);
		for (int b = 0; b < 2; b++)
			if (uint32_t ch = child_of(t, n, b); ch != NIL)
				todo.push_back(ch);
	}
	c->n_entries = std::min(entries, t->max_entries);
	// A writer that died mid-replace left reuse_seq odd: readers would take the lock for
	// ever after.
	c->reuse_seq.store(reuse_seq_next_even(t), std::memory_order_release);
	c->free_head = c->free_tail = NIL;
	for (uint32_t i = 0; i < bump; i++)
		if (!live[i])
			free_node(t, i);
	std::atomic<uint32_t> &seq = c->table_seq;
	uint32_t s = seq.load(std::memory_order_relaxed) | 1;
	seq.store(s, std::memory_order_relaxed);
	if (fill_entries(t, c->root.load(std::memory_order_relaxed), NIL, 0, 0))
		seq.store(s + 1, std::memory_order_release);
}

class trie_locked {
public:
	explicit trie_locked(bpf_lpm_trie *t)
		: g_(t->c->lock)
	{
		if (g_.owner_died())
			trie_audit(t);
	}

private:
	lock_guard g_;
};

template <typename F> bool read_locked(bpf_lpm_trie *t, F &&walk)
{
	trie_locked g(t);
	return walk();
}

// A node to fill: a never-used one while there are any, else the oldest freed one, whose
// readers are made to walk again before it is rewritten. NIL when there is none, or when
// the free list's head is out of range.
uint32_t alloc_node(bpf_lpm_trie *t)
{
	lpm_ctl *c = t->c;
	uint32_t bump = load_once(c->bump);
	if (bump < t->n_nodes) {
		c->bump = bump + 1;
		return bump;
	}
	uint32_t n = load_once(c->free_head);
	if (n >= t->n_nodes)
		return NIL;
	uint32_t next = load_once(t->node(n)->next_free); // checked when it is taken
	c->free_head = next;
	if (next == NIL)
		c->free_tail = NIL;
	c->reuse_seq.store(reuse_seq_next_even(t), std::memory_order_relaxed);
	std::atomic_thread_fence(std::memory_order_release);
	return n;
}

// Replace real node n's key and value in place with those of an update of its prefix: the
// trie's shape and the jump table stay as they are. The key's bits within the prefix are
// the same, so a walk matches n throughout; the bits past it are the update's, as the
// kernel keeps the key of the last update. reuse_seq is odd meanwhile, so a lock-free
// reader that copied any of it walks again.
void rewrite_in_place(bpf_lpm_trie *t, uint32_t n, const void *data, const void *value)
{
	std::atomic<uint32_t> &seq = t->c->reuse_seq;
	uint32_t s = reuse_seq_next_even(t);
	seq.store(s + 1, std::memory_order_relaxed);
	std::atomic_thread_fence(std::memory_order_release);
	copy_to_shared(t->data_of(n), data, t->data_size);
	copy_to_shared(t->value_of(n), value, t->value_size);
	seq.store(s + 2, std::memory_order_release);
}

// A fresh, unpublished node: prefix, data and (for a real node) value; no children.
uint32_t new_node(bpf_lpm_trie *t, uint32_t prefixlen, const void *data, const void *value,
		  uint32_t left = NIL, uint32_t right = NIL)
{
	uint32_t n = alloc_node(t);
	if (n == NIL)
		return NIL;
	lpm_node *x = t->node(n);
	x->child[0].store(left, std::memory_order_relaxed);
	x->child[1].store(right, std::memory_order_relaxed);
	x->prefixlen.store(static_cast<uint16_t>(prefixlen), std::memory_order_relaxed);
	x->flags.store(value ? 0 : LPM_FLAG_IM, std::memory_order_relaxed);
	copy_to_shared(t->data_of(n), data, t->data_size);
	if (value)
		copy_to_shared(t->value_of(n), value, t->value_size);
	return n;
}

// The kernel's check before a prefix is added: BPF_EXIST wants it present, and the map
// must have room (a count scribbled past max_entries means none).
int check_add(bpf_lpm_trie *t, uint64_t flags)
{
	if (flags == uapi::BPF_EXIST)
		return -ENOENT;
	if (t->c->n_entries >= t->max_entries)
		return -ENOSPC;
	return 0;
}

// Where a slot lives: the root, or a child of node `parent`.
std::atomic<uint32_t> &slot_ref(bpf_lpm_trie *t, uint32_t parent, int bit)
{
	return parent == NIL ? t->c->root : t->node(parent)->child[bit];
}

int trie_update_locked(bpf_lpm_trie *t, const void *ukey, const lpm_key &key, const void *value,
		       uint64_t flags)
{
	const char *data = static_cast<const char *>(ukey) + LPM_KEY_HEADER;
	// Find where the key goes: the first node that does not match it all the way, or
	// that has its exact prefix length.
	uint32_t parent = NIL, n = t->c->root.load(std::memory_order_relaxed), matchlen = 0;
	int bit = 0;
	for (uint32_t depth = 0; n != NIL; depth++) {
		if (!node_ok(t, n, depth))
			return -EFAULT;
		matchlen = longest_prefix_match(t, n, key);
		uint32_t plen = prefixlen_of(t, n);
		if (plen != matchlen || plen == key.prefixlen)
			break;
		parent = n;
		bit = extract_bit(key.bytes(), plen);
		n = child_of(t, n, bit);
	}
	std::atomic<uint32_t> &slot = slot_ref(t, parent, bit);
	if (n == NIL) {
		if (int err = check_add(t, flags))
			return err;
		uint32_t x = new_node(t, key.prefixlen, data, value);
		if (x == NIL)
			return -ENOMEM;
		t->c->n_entries++;
		change_slot(t, parent, key, [&] { slot.store(x, std::memory_order_release); });
		return 0;
	}
	if (prefixlen_of(t, n) == matchlen) {
		// The exact prefix: a real node's value is rewritten where it is (the jump
		// table's entries stay right), an intermediate node becomes real.
		if (!is_im(t, n)) {
			if (flags == uapi::BPF_NOEXIST)
				return -EEXIST;
			rewrite_in_place(t, n, data, value);
			return 0;
		}
		if (int err = check_add(t, flags))
			return err;
		uint32_t x = new_node(t, key.prefixlen, data, value, child_of(t, n, 0),
				      child_of(t, n, 1));
		if (x == NIL)
			return -ENOMEM;
		t->c->n_entries++;
		change_slot(t, parent, key, [&] { slot.store(x, std::memory_order_release); });
		free_node(t, n);
		return 0;
	}
	if (int err = check_add(t, flags))
		return err;
	if (matchlen == key.prefixlen) {
		// The key is a prefix of n: it goes between n and its parent. (A bit past
		// max_prefixlen, read for a scribbled prefix length, is still inside the node.)
		int nbit = extract_bit(reinterpret_cast<const uint8_t *>(t->data_of(n)), matchlen);
		uint32_t x =
			new_node(t, key.prefixlen, data, value, nbit ? NIL : n, nbit ? n : NIL);
		if (x == NIL)
			return -ENOMEM;
		t->c->n_entries++;
		change_slot(t, parent, key, [&] { slot.store(x, std::memory_order_release); });
		return 0;
	}
	// They part at matchlen: an intermediate node there, with n and the key as children.
	uint32_t x = new_node(t, key.prefixlen, data, value);
	if (x == NIL)
		return -ENOMEM;
	// n's data, as the kernel copies it: only writers change a node, and we hold the lock.
	int kbit = extract_bit(key.bytes(), matchlen);
	uint32_t im = new_node(t, matchlen, t->data_of(n), nullptr, kbit ? n : x, kbit ? x : n);
	if (im == NIL) {
		free_node(t, x);
		return -ENOMEM;
	}
	t->c->n_entries++;
	change_slot(t, parent, key, [&] { slot.store(im, std::memory_order_release); });
	return 0;
}

int trie_map_update_elem(bpf_map *map, const void *ukey, const void *value, uint64_t flags)
{
	bpf_lpm_trie *t = trie_of(map);
	if (flags > uapi::BPF_EXIST)
		return -EINVAL;
	lpm_key key(t, ukey);
	if (key.prefixlen > t->max_prefixlen)
		return -EINVAL;
	trie_locked g(t);
	return trie_update_locked(t, ukey, key, value, flags);
}

int trie_map_delete_elem(bpf_map *map, const void *ukey)
{
	bpf_lpm_trie *t = trie_of(map);
	lpm_key key(t, ukey);
	if (key.prefixlen > t->max_prefixlen)
		return -EINVAL;
	trie_locked g(t);
	// Walk to the exact node, keeping its parent and the parent's own slot.
	uint32_t grand = NIL, parent = NIL, n = t->c->root.load(std::memory_order_relaxed);
	int pbit = 0, bit = 0, matchlen = 0;
	for (uint32_t depth = 0; n != NIL; depth++) {
		if (!node_ok(t, n, depth))
			return -EFAULT;
		matchlen = static_cast<int>(longest_prefix_match(t, n, key));
		uint32_t plen = prefixlen_of(t, n);
		if (plen != static_cast<uint32_t>(matchlen) || plen == key.prefixlen)
			break;
		grand = parent;
		pbit = bit;
		parent = n;
		bit = extract_bit(key.bytes(), plen);
		n = child_of(t, n, bit);
	}
	if (n == NIL || prefixlen_of(t, n) != key.prefixlen ||
	    prefixlen_of(t, n) != static_cast<uint32_t>(matchlen) || is_im(t, n))
		return -ENOENT;
	if (t->c->n_entries)
		t->c->n_entries--;
	uint32_t left = child_of(t, n, 0), right = child_of(t, n, 1);
	if (left != NIL && right != NIL) {
		change_slot(t, parent, key, [&] {
			t->node(n)->flags.store(LPM_FLAG_IM, std::memory_order_release);
		});
		return 0;
	}
	if (parent != NIL && is_im(t, parent) && left == NIL && right == NIL) {
		// The intermediate parent would keep one child: its other child takes its place.
		uint32_t sibling = child_of(t, parent, bit ^ 1);
		change_slot(t, grand, key, [&] {
			slot_ref(t, grand, pbit).store(sibling, std::memory_order_release);
		});
		free_node(t, parent);
		free_node(t, n);
		return 0;
	}
	uint32_t rest = left != NIL ? left : right;
	change_slot(t, parent, key,
		    [&] { slot_ref(t, parent, bit).store(rest, std::memory_order_release); });
	free_node(t, n);
	return 0;
}

// ---- create ------------------------------------------------------------------------------

int trie_map_alloc_check(const uapi::map_create_attr &) { return 0; }

// The kernel checks the attributes when it allocates, after the offload and token checks.
int trie_map_mem_size(const uapi::map_create_attr &attr, size_t *size)
{
	if (attr.max_entries == 0 || !(attr.map_flags & uapi::BPF_F_NO_PREALLOC) ||
	    (attr.map_flags & ~LPM_CREATE_FLAG_MASK) ||
	    attr.key_size < LPM_KEY_HEADER + LPM_DATA_SIZE_MIN ||
	    attr.key_size > LPM_KEY_HEADER + LPM_DATA_SIZE_MAX || attr.value_size < 1 ||
	    attr.value_size > LPM_VAL_SIZE_MAX)
		return -EINVAL;
	lpm_geometry g = lpm_layout(attr.key_size, attr.value_size, attr.max_entries);
	*size = g.pool_off + static_cast<size_t>(g.n_nodes) * g.node_size;
	return 0;
}

bpf_map *trie_map_alloc() { return new bpf_lpm_trie; }

void trie_map_init(bpf_map *map)
{
	auto *c = map->ctl<lpm_ctl>();
	lpm_geometry g = lpm_layout(map->key_size, map->value_size, map->max_entries);
	c->lock.init();
	c->root.store(NIL, std::memory_order_relaxed);
	c->reuse_seq.store(0, std::memory_order_relaxed);
	c->table_seq.store(0, std::memory_order_relaxed);
	c->n_entries = 0;
	c->n_nodes = g.n_nodes;
	c->bump = 0;
	c->free_head = c->free_tail = NIL;
}

// Whether a control block read from the region could belong to a trie of geometry g. It
// may change the moment after; every use checks again what it reads.
bool trie_ctl_valid(const lpm_ctl *c, const lpm_geometry &g, uint32_t max_entries)
{
	auto index_ok = [&](uint32_t i) { return i == NIL || i < g.n_nodes; };
	return load_once(c->n_nodes) == g.n_nodes && load_once(c->bump) <= g.n_nodes &&
	       load_once(c->n_entries) <= max_entries &&
	       index_ok(c->root.load(std::memory_order_relaxed)) &&
	       index_ok(load_once(c->free_head)) && index_ok(load_once(c->free_tail));
}

int trie_map_attach(bpf_map *map)
{
	bpf_lpm_trie *t = trie_of(map);
	lpm_geometry g = lpm_layout(map->key_size, map->value_size, map->max_entries);
	t->c = map->ctl<lpm_ctl>();
	if (!trie_ctl_valid(t->c, g, map->max_entries))
		return -EINVAL;
	t->table = reinterpret_cast<jump_entry *>(map->data);
	t->pool = map->data + g.pool_off;
	t->table_bits = g.table_bits;
	t->data_size = g.data_size;
	t->max_prefixlen = g.data_size * 8;
	t->value_off = g.value_off;
	t->node_size = g.node_size;
	t->n_nodes = g.n_nodes;
	t->words = (g.data_size + 7) / 8;
	return 0;
}

// Keys must be a struct (one with struct bpf_lpm_trie_key_u8 at its start).
int trie_map_check_btf(const uapi::map_create_attr &, const btf::type_ref *key,
		       const btf::type_ref &)
{
	return key && key->kind == btf::KIND_STRUCT ? 0 : -EINVAL;
}

} // namespace

const bpf_map_ops trie_map_ops = {
	.map_alloc_check = trie_map_alloc_check,
	.map_mem_size = trie_map_mem_size,
	.map_alloc = trie_map_alloc,
	.map_init = trie_map_init,
	.map_attach = trie_map_attach,
	.map_lookup_elem = trie_map_lookup_elem,
	.map_copy_value = trie_map_copy_value,
	.map_update_elem = trie_map_update_elem,
	.map_update_value = trie_map_update_elem,
	.map_delete_elem = trie_map_delete_elem,
	.map_get_next_key = trie_map_get_next_key,
	.map_lookup_batch = generic_map_lookup_batch,
	.map_update_batch = generic_map_update_batch,
	.map_delete_batch = generic_map_delete_batch,
	.map_check_btf = trie_map_check_btf,
};

} // namespace bpfmap
