// The element pool of HASH and PERCPU_HASH maps (hashtab.h draws it), the analogue of the
// kernel's percpu_freelist.c: one "used" bit per element and a second level of full words,
// taken and given back with atomic bit operations by any writer, under any bucket lock.
// Preallocated HASH maps place each new element in one of its key's two home groups.
// LRU maps do not use it: their free elements are the LRU's.
#include <atomic>
#include <cstdint>

#include "maps/hashtab.h"

namespace bpfmap {
namespace {

// Say in the second level that word i of used bits is full. A give-back that raced with us
// may have freed a bit before we set ours: look again, and undo if so. (A give-back after
// our look finds the word was full and clears the bit itself.)
void mark_full(bpf_htab *h, uint32_t i)
{
	std::atomic<uint64_t> &f = h->full[i / 64];
	uint64_t bit = 1ull << (i % 64);
	f.fetch_or(bit, std::memory_order_seq_cst);
	if (h->used[i].load(std::memory_order_seq_cst) != ~0ull)
		f.fetch_and(~bit, std::memory_order_seq_cst);
}

// Take element idx if it is free.
bool pool_take(bpf_htab *h, uint32_t idx)
{
	std::atomic<uint64_t> &w = h->used[idx / 64];
	uint64_t bit = 1ull << (idx % 64);
	if (w.load(std::memory_order_relaxed) & bit)
		return false;
	uint64_t old = w.fetch_or(bit, std::memory_order_seq_cst);
	if (old & bit)
		return false;
	if ((old | bit) == ~0ull)
		mark_full(h, idx / 64);
	return true;
}

// Take the lowest free element of word i of used bits, if it has one. Bits past the last
// element count as taken whatever the region says, and the word is given up after 64
// tries: each failed one means some other taker won the bit.
htab_elem *pool_take_in_word(bpf_htab *h, uint32_t i)
{
	std::atomic<uint64_t> &w = h->used[i];
	const uint64_t past = bits_past_end(i, h->n_elems);
	for (uint32_t tries = 0; tries < 64; tries++) {
		uint64_t v = w.load(std::memory_order_relaxed) | past;
		if (v == ~0ull)
			break;
		uint32_t idx = i * 64 + static_cast<uint32_t>(__builtin_ctzll(~v));
		if (pool_take(h, idx))
			return h->elem(idx);
	}
	mark_full(h, i);
	return nullptr;
}

// Take a free element, searching from word `start` of the second level on. Second-level
// bits past the last word of used bits count as full whatever the region says.
htab_elem *pool_take_any(bpf_htab *h, uint32_t start)
{
	for (uint32_t k = 0; k < h->n_full_words; k++) {
		uint32_t f = start + k < h->n_full_words ? start + k : start + k - h->n_full_words;
		uint64_t v = h->full[f].load(std::memory_order_relaxed) |
			     bits_past_end(f, h->n_used_words);
		while (v != ~0ull) {
			uint32_t i = f * 64 + static_cast<uint32_t>(__builtin_ctzll(~v));
			if (htab_elem *e = pool_take_in_word(h, i))
				return e;
			v |= 1ull << (i % 64);
		}
	}
	return nullptr;
}

// The first element of that home group.
uint32_t home_first(const bpf_htab *h, uint64_t hash, int which)
{
	return home_group(h, hash, which) * h->group_elems;
}

} // namespace

// A free element for a key with this hash: in one of its homes if one has room, else
// anywhere, searching from a place the hash picks so that free elements stay spread out
// (and writers on different CPUs seldom meet on one word of used bits). BPF_F_NO_PREALLOC
// takes the lowest free one, so that it touches memory only as the map grows.
htab_elem *htab_pool_pop(bpf_htab *h, uint64_t hash)
{
	if (h->map_flags & uapi::BPF_F_NO_PREALLOC)
		return pool_take_any(h, 0);
	if (!h->n_groups) {
		uint32_t i = static_cast<uint32_t>((hash >> 32) % h->n_used_words);
		if (htab_elem *e = pool_take_in_word(h, i))
			return e;
		return pool_take_any(h, i / 64);
	}
	for (int which = 0; which < 2; which++) {
		uint32_t first = home_first(h, hash, which);
		for (uint32_t idx = first; idx < first + h->group_elems; idx++)
			if (pool_take(h, idx))
				return h->elem(idx);
	}
	return pool_take_any(h, home_first(h, hash, 0) / 4096);
}

void htab_pool_push(bpf_htab *h, htab_elem *e)
{
	uint32_t idx = h->index_of(e);
	uint64_t old =
		h->used[idx / 64].fetch_and(~(1ull << (idx % 64)), std::memory_order_seq_cst);
	if (old == ~0ull)
		h->full[idx / 4096].fetch_and(~(1ull << (idx / 64 % 64)),
					      std::memory_order_seq_cst);
}

} // namespace bpfmap
