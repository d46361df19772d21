// BPF_MAP_TYPE_RINGBUF and BPF_MAP_TYPE_USER_RINGBUF.
//
// The kernel's layout, so that libbpf's consumer reads a bpfmap ring as it reads the
// kernel's: a consumer page (consumer_pos, then for a user ring the drain's busy flag), a
// producer page (producer_pos), then max_entries bytes of data. Records are 8-byte aligned
// and start with the kernel's header: the length with BUSY (being written) and DISCARD bits,
// and the record's page offset from the ring's first page, which is how a submit finds its
// ring from the record alone.
//
// Region: [consumer page][producer page][data], then the header page (map header, then
// the lock, pending_pos and the consumers' wait queue). Each process also maps the ring a
// second time as [header page][consumer page][producer page][data][data again]: that view
// is the kernel's vmap (the header page standing where the kernel's struct bpf_ringbuf
// ends), so page offsets in record headers are the kernel's, and a record that wraps past
// the end of the data is contiguous.
//
// Producers, as in the kernel: reserve under one lock (robust across processes) moves
// producer_pos; the record's header says BUSY until its producer commits it with one
// exchange. Records commit in any order; the consumer stops at the first BUSY one, so it
// sees them in reservation order. pending_pos (the oldest record still BUSY) keeps a
// reservation from wrapping round onto it. A commit wakes the consumers only if the consumer
// has read everything before this record (it waits for exactly this one), unless the flags
// say otherwise: the kernel's adaptive rule.
//
// USER_RINGBUF turns the roles around: user space produces (libbpf's user_ring_buffer, which
// writes producer_pos and headers itself with no lock, or UserRingProducer, which takes the
// ring's lock so that several may share a ring) and the program side drains, one drainer at
// a time (the consumer page's busy word, which here holds the drainer's thread id so a
// drainer that died can be replaced). Records are checked as the kernel checks them: the
// producer is not trusted.
//
// A producer can die between reserve and commit, which a BPF program cannot. Its record
// would stay BUSY and stop the consumer for good, so each reservation until its commit
// has an owner slot naming the producer's thread; a consumer stuck at a BUSY record whose
// owner is gone discards it (ringbuf_reap_dead_head). At most RB_OWNERS records of one
// ring can be reserved and not yet committed at any time; a reserve beyond that fails as
// if the ring were full.
#include "maps/ringbuf.h"

#include <cerrno>
#include <climits>
#include <cstring>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/lock.h"
#include "core/registry.h"

namespace bpfmap {
namespace {

using uapi::ENOTSUPP;

constexpr uint32_t RINGBUF_CREATE_FLAG_MASK = uapi::BPF_F_NUMA_NODE;
constexpr uint64_t RINGBUF_MAX_RECORD_SZ = UINT_MAX / 4;
constexpr size_t RINGBUF_POS_PAGES = 2; // consumer page, producer page
// The view's first page (the header page) is where the kernel's struct bpf_ringbuf sits:
// record page offsets count from there.
constexpr size_t RINGBUF_PGOFF = 1;

using uapi::BPF_RB_FORCE_WAKEUP;
using uapi::BPF_RB_NO_WAKEUP;

constexpr uint32_t RB_OWNERS = 128;

// A record being written: position + 1 (0: free) and its producer. Taken under the lock,
// freed by the commit (or found stale: a position the consumer has passed).
struct rb_owner {
	std::atomic<uint64_t> pos1;
	std::atomic<uint32_t> tgid, tid;
};

struct ringbuf_ctl {
	shared_lock lock; // producers' reservations
	uint64_t mask;
	uint64_t pending_pos; // under the lock
	// consumer_pos as a producer last read it (under the lock): space is checked against
	// it, and consumer_pos, which the consumer's core keeps writing, is read again only
	// when it says the ring is full.
	uint64_t cons_seen;
	std::atomic<uint32_t> drainer_tgid; // USER_RINGBUF: the process of the busy word's tid
	waitq waiters;
	rb_owner owners[RB_OWNERS];
};
static_assert(MAP_CTL_OFFSET + sizeof(ringbuf_ctl) <= MAP_HEADER_SIZE);

struct bpf_ringbuf_map : bpf_map {
	char *view = nullptr; // [header][consumer][producer][data][data]
	size_t view_len = 0;

	~bpf_ringbuf_map() override
	{
		if (view)
			syscall(SYS_munmap, view, view_len);
	}
	ringbuf_ctl *c() const { return ctl<ringbuf_ctl>(); }
	char *page(size_t i) const { return view + i * PAGE_SIZE; }
	std::atomic<uint64_t> *consumer_pos() const
	{
		return reinterpret_cast<std::atomic<uint64_t> *>(page(RINGBUF_PGOFF));
	}
	std::atomic<uint64_t> *producer_pos() const
	{
		return reinterpret_cast<std::atomic<uint64_t> *>(page(RINGBUF_PGOFF + 1));
	}
	char *ring_data() const { return page(RINGBUF_PGOFF + RINGBUF_POS_PAGES); }
};

bpf_ringbuf_map *rb_of(bpf_map *map) { return static_cast<bpf_ringbuf_map *>(map); }

int ringbuf_map_alloc_check(const uapi::map_create_attr &attr)
{
	if (attr.map_flags & ~RINGBUF_CREATE_FLAG_MASK)
		return -EINVAL;
	uint32_t n = attr.max_entries;
	if (attr.key_size || attr.value_size || n == 0 || (n & (n - 1)) || n % PAGE_SIZE)
		return -EINVAL;
	return 0;
}

int ringbuf_map_mem_size(const uapi::map_create_attr &attr, size_t *size)
{
	*size = RINGBUF_POS_PAGES * PAGE_SIZE + attr.max_entries;
	return 0;
}

bpf_map *ringbuf_map_alloc() { return new bpf_ringbuf_map; }

void ringbuf_map_init(bpf_map *map)
{
	ringbuf_ctl *c = map->ctl<ringbuf_ctl>();
	c->lock.init();
	c->mask = map->max_entries - 1;
	c->pending_pos = 0;
	c->cons_seen = 0;
	c->drainer_tgid.store(0, std::memory_order_relaxed);
	for (auto &s : c->waiters.slot)
		s.nonce.store(0, std::memory_order_relaxed);
	c->waiters.n_armed.store(0, std::memory_order_relaxed);
	for (auto &o : c->owners)
		o.pos1.store(0, std::memory_order_relaxed);
}

// The first owner slot whose pos1 match() accepts, probing from the slot the record's
// offset in the ring hashes to; nullptr when none does.
template <typename F> rb_owner *find_owner(ringbuf_ctl *c, uint64_t ring_off, F &&match)
{
	uint32_t start = static_cast<uint32_t>(ring_off >> 3) % RB_OWNERS;
	for (uint32_t k = 0; k < RB_OWNERS; k++) {
		rb_owner &o = c->owners[(start + k) % RB_OWNERS];
		if (match(o.pos1.load(std::memory_order_acquire)))
			return &o;
	}
	return nullptr;
}

// Under the lock: an owner slot for the record at prod, or nullptr when all are in use.
rb_owner *claim_owner(ringbuf_ctl *c, uint64_t prod, uint64_t cons)
{
	return find_owner(c, prod & c->mask, [&](uint64_t p1) { return p1 == 0 || p1 - 1 < cons; });
}

// After a producer died holding the lock: slots it took for records it never published
// (at producer_pos or past it) would name a position the next reservation reuses.
void forget_unpublished(ringbuf_ctl *c, uint64_t prod)
{
	for (auto &o : c->owners)
		if (uint64_t p1 = o.pos1.load(std::memory_order_relaxed); p1 && p1 - 1 >= prod)
			o.pos1.store(0, std::memory_order_relaxed);
}

// A second mapping of the same pages (mremap of a shared mapping with old size 0).
bool alias_pages(void *from, size_t len, void *to)
{
	return reinterpret_cast<void *>(syscall(SYS_mremap, from, 0, len, MREMAP_MAYMOVE | MREMAP_FIXED, to)) == to;
}

int ringbuf_map_attach(bpf_map *map)
{
	bpf_ringbuf_map *rb = rb_of(map);
	size_t n = map->max_entries;
	size_t len = (RINGBUF_PGOFF + RINGBUF_POS_PAGES) * PAGE_SIZE + 2 * n;
	void *va = reinterpret_cast<void *>(syscall(SYS_mmap, nullptr, len, PROT_NONE,
						    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
	if (va == MAP_FAILED)
		return 0; // every producer and consumer call then fails
	char *v = static_cast<char *>(va);
	char *after_meta = v + (RINGBUF_PGOFF + RINGBUF_POS_PAGES) * PAGE_SIZE;
	if (!alias_pages(map->hdr, PAGE_SIZE, v) ||
	    !alias_pages(map->data, RINGBUF_POS_PAGES * PAGE_SIZE + n, v + PAGE_SIZE) ||
	    !alias_pages(map->data + RINGBUF_POS_PAGES * PAGE_SIZE, n, after_meta + n)) {
		syscall(SYS_munmap, va, len);
		return 0;
	}
	rb->view = v;
	rb->view_len = len;
	return 0;
}

// Element commands: the kernel's ENOTSUPP for every one.
void *ringbuf_map_lookup_elem(bpf_map *, const void *) { return nullptr; }
int ringbuf_map_copy_value(bpf_map *, const void *, void *, uint64_t) { return -ENOTSUPP; }
int ringbuf_map_update_elem(bpf_map *, const void *, const void *, uint64_t) { return -ENOTSUPP; }
int ringbuf_map_delete_elem(bpf_map *, const void *) { return -ENOTSUPP; }
int ringbuf_map_get_next_key(bpf_map *, const void *, void *) { return -ENOTSUPP; }

} // namespace

bool is_ringbuf(const bpf_map *map)
{
	return map->ops == &ringbuf_map_ops || map->ops == &user_ringbuf_map_ops;
}

ringbuf_view ringbuf_view_of(bpf_map *map)
{
	bpf_ringbuf_map *rb = rb_of(map);
	ringbuf_view v{};
	if (!rb->view)
		return v;
	v.consumer_pos = rb->consumer_pos();
	v.busy = reinterpret_cast<std::atomic<int32_t> *>(rb->page(RINGBUF_PGOFF) + 8);
	v.producer_pos = rb->producer_pos();
	v.data = rb->ring_data();
	v.mask = rb->c()->mask;
	v.waiters = &rb->c()->waiters;
	return v;
}

void *ringbuf_reserve(bpf_map *map, uint64_t size, uint64_t flags)
{
	bpf_ringbuf_map *rb = rb_of(map);
	if (flags || !rb->view || size > RINGBUF_MAX_RECORD_SZ)
		return nullptr;
	ringbuf_ctl *c = rb->c();
	uint64_t len = ringbuf_record_len(size);
	if (len > c->mask + 1)
		return nullptr;
	char *data = rb->ring_data();
	lock_guard g(c->lock);
	uint64_t prod = rb->producer_pos()->load(std::memory_order_relaxed);
	if (g.owner_died())
		forget_unpublished(c, prod);
	uint64_t pend = c->pending_pos;
	// Move pending_pos past the records committed since: the oldest BUSY one bounds us.
	while (prod - pend > 0) {
		auto *h = reinterpret_cast<ringbuf_hdr *>(data + (pend & c->mask));
		uint32_t hlen = h->len.load(std::memory_order_acquire);
		if (hlen & BPF_RINGBUF_BUSY_BIT)
			break;
		pend += ringbuf_record_len(hlen & ~BPF_RINGBUF_DISCARD_BIT);
	}
	c->pending_pos = pend;
	uint64_t next = prod + len;
	uint64_t cons = c->cons_seen;
	if (next - cons > c->mask) {
		cons = c->cons_seen = rb->consumer_pos()->load(std::memory_order_acquire);
		if (next - cons > c->mask)
			return nullptr;
	}
	if (next - pend > c->mask)
		return nullptr;
	rb_owner *owner = claim_owner(c, prod, cons);
	if (!owner) { // slots of dead producers free up as the consumer passes them
		c->cons_seen = rb->consumer_pos()->load(std::memory_order_acquire);
		if (!(owner = claim_owner(c, prod, c->cons_seen)))
			return nullptr;
	}
	thread_id me = current_thread();
	owner->tgid.store(me.tgid, std::memory_order_relaxed);
	owner->tid.store(me.tid, std::memory_order_relaxed);
	owner->pos1.store(prod + 1, std::memory_order_relaxed);
	size_t off = prod & c->mask;
	auto *h = reinterpret_cast<ringbuf_hdr *>(data + off);
	h->pg_off = static_cast<uint32_t>(RINGBUF_PGOFF + RINGBUF_POS_PAGES + off / PAGE_SIZE);
	h->len.store(static_cast<uint32_t>(size) | BPF_RINGBUF_BUSY_BIT, std::memory_order_relaxed);
	rb->producer_pos()->store(next, std::memory_order_release);
	return h + 1;
}

void ringbuf_commit(void *sample, uint64_t flags, bool discard)
{
	auto *h = static_cast<ringbuf_hdr *>(sample) - 1;
	uintptr_t page = reinterpret_cast<uintptr_t>(h) & ~(PAGE_SIZE - 1);
	char *view = reinterpret_cast<char *>(page - static_cast<uintptr_t>(h->pg_off) * PAGE_SIZE);
	auto *c = reinterpret_cast<ringbuf_ctl *>(view + MAP_CTL_OFFSET);
	auto *cons_pos = reinterpret_cast<std::atomic<uint64_t> *>(view + RINGBUF_PGOFF * PAGE_SIZE);
	char *data = view + (RINGBUF_PGOFF + RINGBUF_POS_PAGES) * PAGE_SIZE;
	uint32_t len = h->len.load(std::memory_order_relaxed) ^ BPF_RINGBUF_BUSY_BIT;
	if (discard)
		len |= BPF_RINGBUF_DISCARD_BIT;
	// A full barrier: the consumer_pos load below cannot pass it (see waitq.h).
	h->len.exchange(len, std::memory_order_seq_cst);
	uint64_t rec_pos = static_cast<uint64_t>(reinterpret_cast<char *>(h) - data);
	// Free our owner slot. Positions are known here only modulo the ring size; a stale
	// slot with the same offset may be freed instead of ours, which costs nothing: ours
	// then goes stale, and stale slots are free once the consumer passes them.
	if (rb_owner *o = find_owner(c, rec_pos, [&](uint64_t p1) { return p1 && ((p1 - 1) & c->mask) == rec_pos; }))
		o->pos1.store(0, std::memory_order_relaxed);
	// No consumer armed to sleep: nothing to decide (and no consumer_pos cache line to
	// pull from the consumer's core).
	if (!waitq_active(&c->waiters) || (flags & BPF_RB_NO_WAKEUP && !(flags & BPF_RB_FORCE_WAKEUP)))
		return;
	uint64_t cons = cons_pos->load(std::memory_order_acquire) & c->mask;
	if ((flags & BPF_RB_FORCE_WAKEUP) || cons == rec_pos)
		waitq_wake(&c->waiters);
}

long ringbuf_output(bpf_map *map, const void *src, uint64_t size, uint64_t flags)
{
	if (flags & ~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP))
		return -EINVAL;
	void *rec = ringbuf_reserve(map, size, 0);
	if (!rec)
		return -EAGAIN;
	memcpy(rec, src, size);
	ringbuf_commit(rec, flags, false);
	return 0;
}

bool ringbuf_reap_dead_head(bpf_map *map)
{
	bpf_ringbuf_map *rb = rb_of(map);
	if (!rb->view)
		return false;
	ringbuf_ctl *c = rb->c();
	uint64_t cons = rb->consumer_pos()->load(std::memory_order_acquire);
	if (cons == rb->producer_pos()->load(std::memory_order_acquire))
		return false;
	auto *h = reinterpret_cast<ringbuf_hdr *>(rb->ring_data() + (cons & c->mask));
	uint32_t len = h->len.load(std::memory_order_acquire);
	if (!(len & BPF_RINGBUF_BUSY_BIT))
		return false;
	rb_owner *o = find_owner(c, cons & c->mask, [&](uint64_t p1) { return p1 == cons + 1; });
	if (!o)
		return false;
	thread_id t{o->tgid.load(std::memory_order_relaxed), o->tid.load(std::memory_order_relaxed)};
	if (thread_alive(t))
		return false;
	uint32_t dead = (len & ~BPF_RINGBUF_BUSY_BIT) | BPF_RINGBUF_DISCARD_BIT;
	if (!h->len.compare_exchange_strong(len, dead, std::memory_order_seq_cst))
		return false;
	o->pos1.store(0, std::memory_order_relaxed);
	return true;
}

namespace {

constexpr long USER_RINGBUF_MAX_SAMPLES = 128 * 1024;
constexpr uint32_t DYNPTR_MAX_SIZE = (1u << 24) - 1;

// Take the drain: busy holds our tid. A drainer that died leaves its tid there; it is
// replaced. false: a live drainer has it.
bool drain_begin(bpf_ringbuf_map *rb, std::atomic<int32_t> *busy)
{
	thread_id me = current_thread();
	int32_t cur = 0;
	for (;;) {
		if (busy->compare_exchange_strong(cur, static_cast<int32_t>(me.tid), std::memory_order_acquire)) {
			rb->c()->drainer_tgid.store(me.tgid, std::memory_order_relaxed);
			return true;
		}
		thread_id holder{rb->c()->drainer_tgid.load(std::memory_order_relaxed), static_cast<uint32_t>(cur)};
		if (thread_alive(holder))
			return false;
	}
}

// The next record of a user ring, checked as the kernel checks what user space wrote:
// 0 with the record, -ENODATA (none, or the next still BUSY), -EAGAIN (discarded:
// skipped), -EINVAL or -E2BIG (a header no producer should have written).
int user_ringbuf_peek(bpf_ringbuf_map *rb, std::atomic<uint64_t> *cons_pos, void **sample, uint32_t *size)
{
	uint64_t prod = rb->producer_pos()->load(std::memory_order_acquire);
	if (prod % 8)
		return -EINVAL;
	uint64_t cons = cons_pos->load(std::memory_order_acquire);
	if (cons >= prod)
		return -ENODATA;
	uint64_t mask = rb->c()->mask;
	auto *h = reinterpret_cast<ringbuf_hdr *>(rb->ring_data() + (cons & mask));
	uint32_t len = h->len.load(std::memory_order_acquire);
	uint32_t flags = len & (BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
	uint32_t sample_len = len & ~flags;
	uint64_t total = ringbuf_record_len(sample_len);
	if (total > prod - cons)
		return -EINVAL;
	if (total > mask + 1 || sample_len > DYNPTR_MAX_SIZE)
		return -E2BIG;
	if (flags & BPF_RINGBUF_DISCARD_BIT) {
		cons_pos->store(cons + total, std::memory_order_release);
		return -EAGAIN;
	}
	if (flags & BPF_RINGBUF_BUSY_BIT)
		return -ENODATA;
	*sample = rb->ring_data() + ((cons + BPF_RINGBUF_HDR_SZ) & mask);
	*size = sample_len;
	return 0;
}

} // namespace

long user_ringbuf_drain(bpf_map *map, user_ringbuf_callback cb, void *ctx, uint64_t flags)
{
	if (flags & ~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP))
		return -EINVAL;
	bpf_ringbuf_map *rb = rb_of(map);
	if (!rb->view)
		return -ENOMEM;
	ringbuf_view v = ringbuf_view_of(map);
	if (!drain_begin(rb, v.busy))
		return -EBUSY;
	long samples = 0, discarded = 0, ret = 0;
	for (; samples < USER_RINGBUF_MAX_SAMPLES && ret == 0; samples++) {
		void *sample;
		uint32_t size;
		int err = user_ringbuf_peek(rb, v.consumer_pos, &sample, &size);
		if (err == -ENODATA)
			break;
		if (err == -EAGAIN) {
			discarded++;
			continue;
		}
		if (err) {
			ret = err;
			break;
		}
		ret = cb(sample, size, ctx);
		uint64_t cons = v.consumer_pos->load(std::memory_order_relaxed);
		v.consumer_pos->store(cons + ringbuf_record_len(size), std::memory_order_release);
	}
	if (ret >= 0)
		ret = samples - discarded;
	v.busy->store(0, std::memory_order_seq_cst);
	// Producers waiting for room (epoll, EPOLLOUT) are woken as the kernel wakes them.
	if ((flags & BPF_RB_FORCE_WAKEUP) || (!(flags & BPF_RB_NO_WAKEUP) && samples > 0))
		if (waitq_active(v.waiters))
			waitq_wake(v.waiters);
	return ret;
}

void *user_ringbuf_reserve(bpf_map *map, uint64_t size, int *err)
{
	bpf_ringbuf_map *rb = rb_of(map);
	if (!rb->view) {
		*err = ENOMEM;
		return nullptr;
	}
	if (size & (BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT) || size > UINT32_MAX) {
		*err = E2BIG;
		return nullptr;
	}
	ringbuf_ctl *c = rb->c();
	uint64_t total = ringbuf_record_len(size);
	if (total > c->mask + 1) {
		*err = E2BIG;
		return nullptr;
	}
	lock_guard g(c->lock);
	uint64_t cons = rb->consumer_pos()->load(std::memory_order_acquire);
	uint64_t prod = rb->producer_pos()->load(std::memory_order_relaxed);
	if (c->mask + 1 - (prod - cons) < total) {
		*err = ENOSPC;
		return nullptr;
	}
	auto *h = reinterpret_cast<ringbuf_hdr *>(rb->ring_data() + (prod & c->mask));
	h->len.store(static_cast<uint32_t>(size) | BPF_RINGBUF_BUSY_BIT, std::memory_order_relaxed);
	h->pg_off = 0;
	rb->producer_pos()->store(prod + total, std::memory_order_release);
	return h + 1;
}

void user_ringbuf_commit(void *sample, bool discard)
{
	auto *h = static_cast<ringbuf_hdr *>(sample) - 1;
	uint32_t len = h->len.load(std::memory_order_relaxed) & ~BPF_RINGBUF_BUSY_BIT;
	h->len.store(discard ? len | BPF_RINGBUF_DISCARD_BIT : len, std::memory_order_release);
}

uint64_t ringbuf_query(bpf_map *map, uint64_t flags)
{
	bpf_ringbuf_map *rb = rb_of(map);
	if (!rb->view)
		return 0;
	switch (flags) {
	case uapi::BPF_RB_AVAIL_DATA:
		return rb->producer_pos()->load(std::memory_order_acquire) -
		       rb->consumer_pos()->load(std::memory_order_acquire);
	case uapi::BPF_RB_RING_SIZE:
		return rb->c()->mask + 1;
	case uapi::BPF_RB_CONS_POS:
		return rb->consumer_pos()->load(std::memory_order_acquire);
	case uapi::BPF_RB_PROD_POS:
		return rb->producer_pos()->load(std::memory_order_acquire);
	default:
		return 0;
	}
}

namespace {

// The kernel's pages of a ring's fd: consumer page, producer page, the data twice. A
// writable mapping may cover the consumer page alone (RINGBUF: the consumer advances its
// position) or anything but it (USER_RINGBUF: the producer writes its position and data).
int ringbuf_map_mmap_check(const bpf_map *map, bool write, size_t len, size_t off)
{
	size_t pgoff = off / PAGE_SIZE, pages = (len + PAGE_SIZE - 1) / PAGE_SIZE;
	if (write) {
		if (map->ops == &ringbuf_map_ops && (pgoff != 0 || pages != 1))
			return -EPERM;
		if (map->ops == &user_ringbuf_map_ops && pgoff == 0)
			return -EPERM;
	}
	size_t total = RINGBUF_POS_PAGES + 2 * (map->max_entries / PAGE_SIZE);
	if (pgoff > total || pages > total - pgoff)
		return -EINVAL;
	return 0;
}

// A ring's fd maps as the kernel's ring does: its pages [consumer][producer][data][data
// again], where the file has the data once. A mapping that crosses into the second copy
// is made of two pieces in one reserved range. (Raw system calls: mmap() is interposed.)
void *ringbuf_map_mmap(bpf_map *map, void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	auto raw = [](void *a, size_t l, int p, int f, int d, off_t o) {
		return reinterpret_cast<void *>(syscall(SYS_mmap, a, l, p, f, d, o));
	};
	size_t data_len = map->max_entries;
	size_t first_copy_end = RINGBUF_POS_PAGES * PAGE_SIZE + data_len; // in the ring's page space
	size_t start = static_cast<size_t>(off), end = start + round_up(len, PAGE_SIZE);
	if (end <= first_copy_end)
		return raw(addr, len, prot, flags, fd, off);
	if (start >= first_copy_end)
		return raw(addr, len, prot, flags, fd, static_cast<off_t>(start - data_len));
	void *p = raw(addr, end - start, PROT_NONE,
		      MAP_PRIVATE | MAP_ANONYMOUS | (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)), -1, 0);
	if (p == MAP_FAILED)
		return p;
	char *base = static_cast<char *>(p);
	size_t head = first_copy_end - start;
	int fixed = (flags & ~MAP_FIXED_NOREPLACE) | MAP_FIXED;
	if (raw(base, head, prot, fixed, fd, off) == MAP_FAILED ||
	    raw(base + head, end - start - head, prot, fixed, fd, RINGBUF_POS_PAGES * PAGE_SIZE) == MAP_FAILED) {
		int e = errno;
		syscall(SYS_munmap, p, end - start);
		errno = e;
		return MAP_FAILED;
	}
	return p;
}

// Both types serve the same commands; the ops tables differ by address, which is how mmap
// and the ABI tell them apart.
constexpr bpf_map_ops ringbuf_ops_common = {
	.map_alloc_check = ringbuf_map_alloc_check,
	.map_mem_size = ringbuf_map_mem_size,
	.map_alloc = ringbuf_map_alloc,
	.map_init = ringbuf_map_init,
	.map_attach = ringbuf_map_attach,
	.map_lookup_elem = ringbuf_map_lookup_elem,
	.map_lookup_percpu_elem = nullptr,
	.map_copy_value = ringbuf_map_copy_value,
	.map_update_elem = ringbuf_map_update_elem,
	.map_update_value = ringbuf_map_update_elem,
	.map_delete_elem = ringbuf_map_delete_elem,
	.map_get_next_key = ringbuf_map_get_next_key,
	.map_lookup_and_delete_elem = nullptr,
	.map_lookup_batch = nullptr,
	.map_lookup_and_delete_batch = nullptr,
	.map_update_batch = nullptr,
	.map_delete_batch = nullptr,
	.map_push_elem = nullptr,
	.map_pop_elem = nullptr,
	.map_peek_elem = nullptr,
	.map_mmapable = nullptr,
	.map_mmap_check = ringbuf_map_mmap_check,
	.map_mmap = ringbuf_map_mmap,
	.map_check_btf = nullptr,
	.map_get_hash = nullptr,
};

} // namespace

const bpf_map_ops ringbuf_map_ops = ringbuf_ops_common;
const bpf_map_ops user_ringbuf_map_ops = ringbuf_ops_common;

} // namespace bpfmap
