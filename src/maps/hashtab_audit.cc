// The repair after a writer died holding a bucket lock (hashtab.h, "Concurrency
// contract"): the next holder of that lock flags the map, and with_bucket_locked() runs
// the audit once its own lock is released.
#include <atomic>
#include <cstdint>
#include <vector>

#include "maps/hashtab.h"

namespace bpfmap {

// Rebuild the used bits and the live count from the buckets, with every lock held so that
// no element is in a writer's hands. Safe to die in: a used bit is only ever cleared for an
// element no bucket holds, and the flag stays set until the end.
void htab_audit(bpf_htab *h)
{
	htab_ctl *c = h->ctl_;
	for (uint32_t i = 0; i <= h->lock_mask; i++)
		h->locks[i].lock();
	if (c->needs_audit.load(std::memory_order_relaxed)) {
		uint32_t n = h->n_elems;
		std::vector<bool> live(n);
		uint32_t count = 0;
		auto mark = [&](uint32_t idx) {
			if (idx < n && !live[idx]) {
				live[idx] = true;
				count++;
				// Odd: its writer died mid-rewrite. Readers wait on it.
				std::atomic<uint32_t> &seq = h->elem(idx)->seq;
				uint32_t s = seq.load(std::memory_order_relaxed);
				if (s & 1)
					seq.store(s + 1, std::memory_order_release);
			}
		};
		for (uint32_t b = 0; b <= h->bucket_mask; b++) {
			bucket *bk = &h->buckets[b];
			uint64_t w[2] = {bk->tagw[0].load(std::memory_order_relaxed),
					 bk->tagw[1].load(std::memory_order_relaxed)};
			for (uint32_t i = 0; i < SLOTS; i++)
				if (tag_at(w, i))
					mark(bk->slot[i].load(std::memory_order_relaxed));
			uint32_t idx = chain_head(bk);
			for (uint32_t steps = 0; !(idx & NULLS_BIT) && idx < n && steps < n;
			     steps++) {
				mark(idx);
				idx = h->elem(idx)->next.load(std::memory_order_relaxed);
			}
		}
		// An LRU map's free elements are the LRU's: it keeps its own lists.
		for (uint32_t i = 0; i < h->n_used_words; i++) {
			uint64_t bits = bits_past_end(i, n);
			for (uint32_t j = 0; j < 64 && i * 64 + j < n; j++)
				if (live[i * 64 + j])
					bits |= 1ull << j;
			h->used[i].store(bits, std::memory_order_relaxed);
		}
		for (uint32_t f = 0; f < h->n_full_words; f++) {
			uint64_t bits = bits_past_end(f, h->n_used_words);
			for (uint32_t j = 0; j < 64 && f * 64 + j < h->n_used_words; j++)
				if (h->used[f * 64 + j].load(std::memory_order_relaxed) == ~0ull)
					bits |= 1ull << j;
			h->full[f].store(bits, std::memory_order_release);
		}
		c->count.store(count, std::memory_order_relaxed);
		c->needs_audit.store(0, std::memory_order_release);
	}
	for (uint32_t i = h->lock_mask + 1; i-- > 0;)
		h->locks[i].unlock();
}

} // namespace bpfmap
