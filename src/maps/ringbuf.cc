// BPF_MAP_TYPE_RINGBUF and BPF_MAP_TYPE_USER_RINGBUF.
//
// The kernel's layout, so that libbpf's consumer reads a bpfmap ring as it reads the
// kernel's: a consumer page (consumer_pos, then for a user ring the drain's busy word), a
// producer page (producer_pos), then max_entries bytes of data. Records are 8-byte aligned
// and start with the kernel's header: the length with BUSY (being written) and DISCARD bits,
// and the record's page offset from the ring's first page.
//
// Region: [consumer page][producer page][data], then the header page (map header, then
// the lock, pending_pos, the consumers' wait queue and the owner slots). Each process also
// maps the ring a second time as [header page][consumer page][producer page][data][data
// again]: that view is the kernel's vmap (the header page standing where the kernel's struct
// bpf_ringbuf ends), so page offsets in record headers are the kernel's, and a record that
// wraps past the end of the data is contiguous.
//
// Producers, as in the kernel: reserve under one lock (robust across processes) moves
// producer_pos; the record's header says BUSY until its producer commits it. Records
// commit in any order; the consumer stops at the first BUSY one, so it sees them in
// reservation order. pending_pos (the oldest record still BUSY) keeps a reservation from
// wrapping round onto it. A commit wakes the consumers only if the consumer has read
// everything before this record (it waits for exactly this one), unless the flags say
// otherwise: the kernel's adaptive rule.
//
// USER_RINGBUF turns the roles around: user space produces (libbpf's user_ring_buffer, which
// writes producer_pos and headers itself with no lock, or UserRingProducer, which takes the
// ring's lock so that several may share a ring) and the program side drains, one drainer at
// a time: the consumer page's busy word holds the drainer's process and thread id in one
// 64-bit word, taken with one compare-and-swap, so a drainer that died can be replaced and
// two drainers never both think they hold it. Records are checked as the kernel checks
// them: the producer is not trusted.
//
// A producer can die between reserve and commit, which a BPF program cannot. Its record
// would stay BUSY and stop the consumer for good, so each reservation until its commit
// has an owner slot naming the position and the producer's process; a consumer stuck at a
// BUSY record whose process is gone discards it (ringbuf_reap_dead_head). Liveness is the
// process's, not the thread's: any thread of the reserving process may submit or discard
// the record, also after the thread that reserved it has exited. Commit and reap are decided
// by one compare-and-swap on the header (BUSY to committed, or BUSY to discarded): the loser
// changes nothing, and a commit acts only while an owner slot of its own process still names
// the record's exact position, so a submit of a record that was already reaped cannot set
// BUSY on a header the consumer has passed, nor commit a record reserved since at the same
// address by another process. (One ambiguity is left: if this process's record was reaped
// and this process reserved again at the same address, the two records are one pointer, and
// a submit of it commits the newer.) At most RB_OWNERS records of one ring can be reserved
// and not yet committed at any time; a reserve beyond that fails as if the ring were full.
//
// Trust. Everything in the shared pages may be any bytes at any moment: positions, headers,
// owner slots, the busy word. The ring's size comes from the validated map header (the
// handle's max_entries); every position is masked with that private mask and checked to be
// 8-byte aligned before a header at it is read, and every length is checked against the
// producer position before anything moves by it, so all accesses stay inside the view. A
// commit finds its ring through the reserving thread's own record of its last reservation
// or a process-local table of views (the header's page offset is only a hint checked
// against it), never by address arithmetic on shared values. A corrupt
// ring makes reserve fail and the consumer or drain return an errno (EFAULT, or the
// kernel's where the kernel checks the same); it never makes them fault or loop unbounded.
#include "maps/ringbuf.h"

#include <cerrno>
#include <climits>
#include <cstring>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
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
constexpr size_t RINGBUF_DATA_PGOFF = RINGBUF_PGOFF + RINGBUF_POS_PAGES;

using uapi::BPF_RB_FORCE_WAKEUP;
using uapi::BPF_RB_NO_WAKEUP;

constexpr uint32_t RB_OWNERS = 128;

// No process has an id above the kernel's PID_MAX_LIMIT (or 0): a slot or busy word that
// names one is corrupt, and names no one alive.
constexpr uint32_t PID_MAX_LIMIT = 4u << 20;

// A record being written: position + 1 (0: free) and its producer's process. Taken under
// the lock, freed by the commit or the reaper (see slot_free for the slots they leave).
struct rb_owner {
	std::atomic<uint64_t> pos1;
	std::atomic<uint32_t> tgid;
	uint32_t pad;
};

struct ringbuf_ctl {
	shared_lock lock;     // producers' reservations
	uint64_t mask;	      // max_entries - 1; checked at attach, the handle's copy is used
	uint64_t pending_pos; // under the lock
	// consumer_pos as a producer last read it (under the lock): space is checked against
	// it, and consumer_pos, which the consumer's core keeps writing, is read again only
	// when it says the ring is full.
	uint64_t cons_seen;
	waitq waiters;
	rb_owner owners[RB_OWNERS];
};
static_assert(MAP_CTL_OFFSET + sizeof(ringbuf_ctl) <= MAP_HEADER_SIZE);

// USER_RINGBUF's busy word, after consumer_pos in the consumer page: the drainer's tgid
// in the high half, its tid in the low half; 0 when no one drains.
constexpr size_t RINGBUF_BUSY_OFF = 8;

struct bpf_ringbuf_map : bpf_map {
	char *view = nullptr; // [header][consumer][producer][data][data]
	size_t view_len = 0;
	uint64_t mask = 0; // max_entries - 1, from the validated header

	~bpf_ringbuf_map() override;
	ringbuf_ctl *c() const { return ctl<ringbuf_ctl>(); }
	char *page(size_t i) const { return view + i * PAGE_SIZE; }
	std::atomic<uint64_t> *consumer_pos() const
	{
		return reinterpret_cast<std::atomic<uint64_t> *>(page(RINGBUF_PGOFF));
	}
	std::atomic<uint64_t> *busy() const
	{
		return reinterpret_cast<std::atomic<uint64_t> *>(page(RINGBUF_PGOFF) +
								 RINGBUF_BUSY_OFF);
	}
	std::atomic<uint64_t> *producer_pos() const
	{
		return reinterpret_cast<std::atomic<uint64_t> *>(page(RINGBUF_PGOFF + 1));
	}
	char *ring_data() const { return page(RINGBUF_DATA_PGOFF); }
	ringbuf_hdr *hdr_at(uint64_t pos) const
	{
		return reinterpret_cast<ringbuf_hdr *>(ring_data() + (pos & mask));
	}
};

bpf_ringbuf_map *rb_of(bpf_map *map) { return static_cast<bpf_ringbuf_map *>(map); }

// The views of this process's rings, so that a commit, which has only the record's
// address, finds its ring in private memory. Open addressing on the view's address; a slot
// once used is never empty again (GONE when its ring went), so a probe may stop at the
// first empty slot. Lock-free: a slot is claimed (CLAIMED) before its ring is written and
// shows the view only after; a view is added before its ring can hold a record and
// removed after the ring's last use. Views are page-aligned, so never GONE or CLAIMED.
constexpr size_t VIEW_SLOTS = 4096;
constexpr uintptr_t VIEW_GONE = 1, VIEW_CLAIMED = 2;

struct view_slot {
	std::atomic<uintptr_t> view;
	std::atomic<bpf_ringbuf_map *> rb;
};
view_slot views[VIEW_SLOTS];

size_t view_hash(uintptr_t view) { return ((view >> 12) * 0x9e3779b97f4a7c15ull) >> 52; }
static_assert(VIEW_SLOTS == size_t{1} << 12);

bool view_add(bpf_ringbuf_map *rb)
{
	auto key = reinterpret_cast<uintptr_t>(rb->view);
	for (size_t i = 0, h = view_hash(key); i < VIEW_SLOTS; i++) {
		view_slot &s = views[(h + i) % VIEW_SLOTS];
		uintptr_t v = s.view.load(std::memory_order_relaxed);
		if (v > VIEW_GONE ||
		    !s.view.compare_exchange_strong(v, VIEW_CLAIMED, std::memory_order_relaxed))
			continue;
		s.rb.store(rb, std::memory_order_relaxed);
		s.view.store(key, std::memory_order_release);
		return true;
	}
	return false;
}

void view_remove(bpf_ringbuf_map *rb)
{
	auto key = reinterpret_cast<uintptr_t>(rb->view);
	for (size_t i = 0, h = view_hash(key); i < VIEW_SLOTS; i++) {
		view_slot &s = views[(h + i) % VIEW_SLOTS];
		uintptr_t v = s.view.load(std::memory_order_relaxed);
		if (v == 0)
			return;
		if (v == key && s.rb.load(std::memory_order_relaxed) == rb) {
			s.view.store(VIEW_GONE, std::memory_order_release);
			return;
		}
	}
}

bpf_ringbuf_map *view_find(uintptr_t view)
{
	if (view < PAGE_SIZE)
		return nullptr;
	for (size_t i = 0, h = view_hash(view); i < VIEW_SLOTS; i++) {
		view_slot &s = views[(h + i) % VIEW_SLOTS];
		uintptr_t v = s.view.load(std::memory_order_acquire);
		if (v == view)
			return s.rb.load(std::memory_order_relaxed);
		if (v == 0)
			return nullptr;
	}
	return nullptr;
}

// Whether h is a record header in the first copy of rb's data: 8-byte aligned, inside.
bool holds_record(const bpf_ringbuf_map *rb, const ringbuf_hdr *h)
{
	uintptr_t off =
		reinterpret_cast<uintptr_t>(h) - reinterpret_cast<uintptr_t>(rb->ring_data());
	return off <= rb->mask && off % 8 == 0;
}

// The ring whose view holds the record header h, or nullptr. The header's page offset
// says which view, as in the kernel; it is shared memory, so what it says is only used
// once the private table confirms it, and every view is searched when it does not.
[[gnu::noinline]] bpf_ringbuf_map *ring_search(const ringbuf_hdr *h)
{
	for (view_slot &s : views) {
		uintptr_t v = s.view.load(std::memory_order_acquire);
		if (v <= VIEW_CLAIMED)
			continue;
		bpf_ringbuf_map *rb = s.rb.load(std::memory_order_relaxed);
		if (rb && holds_record(rb, h))
			return rb;
	}
	return nullptr;
}

bpf_ringbuf_map *ring_of_record(const ringbuf_hdr *h)
{
	uint32_t pg_off = __atomic_load_n(&h->pg_off, __ATOMIC_RELAXED);
	uintptr_t page = reinterpret_cast<uintptr_t>(h) & ~(PAGE_SIZE - 1);
	bpf_ringbuf_map *rb = view_find(page - uintptr_t{pg_off} * PAGE_SIZE);
	if (__builtin_expect(rb && holds_record(rb, h), 1))
		return rb;
	return ring_search(h);
}

// Each thread's last reservation through ringbuf_reserve(), so that the usual commit,
// by the thread that reserved, needs neither the table above nor the owner slots' probe:
// everything it must know is private. gen is views_gen when it was made: a ring that
// went since (and a new ring at the same address) cannot be taken for it.
struct last_reservation {
	ringbuf_hdr *h;
	bpf_ringbuf_map *rb;
	rb_owner *owner;
	uint64_t pos1;
	uint64_t gen;
};
thread_local last_reservation last_rsv [[gnu::tls_model("initial-exec")]];
std::atomic<uint64_t> views_gen{0};

bpf_ringbuf_map::~bpf_ringbuf_map()
{
	if (!view)
		return;
	view_remove(this);
	views_gen.fetch_add(1, std::memory_order_relaxed);
	syscall(SYS_munmap, view, view_len);
}

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
	for (auto &s : c->waiters.slot)
		s.nonce.store(0, std::memory_order_relaxed);
	c->waiters.n_armed.store(0, std::memory_order_relaxed);
	for (auto &o : c->owners)
		o.pos1.store(0, std::memory_order_relaxed);
}

// The first owner slot match(slot) accepts, probing from the slot the record's offset in
// the ring hashes to; nullptr when none does.
template <typename F> rb_owner *find_owner(ringbuf_ctl *c, uint64_t ring_off, F &&match)
{
	uint32_t start = static_cast<uint32_t>(ring_off >> 3) % RB_OWNERS;
	for (uint32_t k = 0; k < RB_OWNERS; k++) {
		rb_owner &o = c->owners[(start + k) % RB_OWNERS];
		if (match(o))
			return &o;
	}
	return nullptr;
}

// After a producer died holding the lock: slots it took for records it never published
// (at producer_pos or past it) would name a position the next reservation reuses.
void forget_unpublished(ringbuf_ctl *c, uint64_t prod)
{
	for (auto &o : c->owners)
		if (uint64_t p1 = o.pos1.load(std::memory_order_relaxed); p1 && p1 - 1 >= prod)
			o.pos1.store(0, std::memory_order_relaxed);
}

// This process's id, for the owner slots: read on every reserve and commit, so kept here
// rather than asked of the kernel. A fork child forgets it, and its one thread forgets the
// parent's last reservation, which belongs to the parent.
std::atomic<uint32_t> self_tgid{0};
const bool self_tgid_atfork = [] {
	pthread_atfork(nullptr, nullptr, [] {
		self_tgid.store(0, std::memory_order_relaxed);
		last_rsv = {};
	});
	return true;
}();

uint32_t this_process()
{
	uint32_t t = self_tgid.load(std::memory_order_relaxed);
	if (__builtin_expect(t == 0, 0)) {
		t = static_cast<uint32_t>(getpid());
		self_tgid.store(t, std::memory_order_relaxed);
	}
	return t;
}

// Whether a process with this id exists (one we may not signal does too).
bool process_alive(uint32_t tgid)
{
	if (tgid == 0 || tgid > PID_MAX_LIMIT)
		return false;
	return syscall(SYS_kill, static_cast<pid_t>(tgid), 0) == 0 || errno != ESRCH;
}

// A second mapping of the same pages (mremap of a shared mapping with old size 0).
bool alias_pages(void *from, size_t len, void *to)
{
	return reinterpret_cast<void *>(
		       syscall(SYS_mremap, from, 0, len, MREMAP_MAYMOVE | MREMAP_FIXED, to)) == to;
}

int ringbuf_map_attach(bpf_map *map)
{
	bpf_ringbuf_map *rb = rb_of(map);
	size_t n = map->max_entries;
	if (map->ctl<ringbuf_ctl>()->mask != n - 1)
		return -EINVAL;
	rb->mask = n - 1;
	size_t len = RINGBUF_DATA_PGOFF * PAGE_SIZE + 2 * n;
	void *va = reinterpret_cast<void *>(syscall(SYS_mmap, nullptr, len, PROT_NONE,
						    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
						    off_t{0}));
	if (va == MAP_FAILED)
		return -ENOMEM;
	char *v = static_cast<char *>(va);
	char *after_meta = v + RINGBUF_DATA_PGOFF * PAGE_SIZE;
	if (!alias_pages(map->hdr, PAGE_SIZE, v) ||
	    !alias_pages(map->data, RINGBUF_POS_PAGES * PAGE_SIZE + n, v + PAGE_SIZE) ||
	    !alias_pages(map->data + RINGBUF_POS_PAGES * PAGE_SIZE, n, after_meta + n)) {
		syscall(SYS_munmap, va, len);
		return -ENOMEM;
	}
	rb->view = v;
	rb->view_len = len;
	if (!view_add(rb)) {
		rb->view = nullptr;
		syscall(SYS_munmap, va, len);
		return -ENOMEM;
	}
	return 0;
}

// Element commands: the kernel's ENOTSUPP for every one.
void *ringbuf_map_lookup_elem(bpf_map *, const void *) { return nullptr; }
int ringbuf_map_copy_value(bpf_map *, const void *, void *, uint64_t) { return -ENOTSUPP; }
int ringbuf_map_update_elem(bpf_map *, const void *, const void *, uint64_t) { return -ENOTSUPP; }
int ringbuf_map_delete_elem(bpf_map *, const void *) { return -ENOTSUPP; }
int ringbuf_map_get_next_key(bpf_map *, const void *, void *) { return -ENOTSUPP; }

// Under the lock: move pending_pos past the records committed since it was last moved, up
// to the oldest BUSY one or prod. false when the positions or a length are corrupt (the
// walk would leave [pending_pos, prod]).
bool advance_pending(bpf_ringbuf_map *rb, ringbuf_ctl *c, uint64_t prod, uint64_t *pending)
{
	uint64_t pend = c->pending_pos;
	if (__builtin_expect(prod - pend > rb->mask || pend % 8, 0))
		return false;
	while (pend != prod) {
		uint32_t hlen = rb->hdr_at(pend)->len.load(std::memory_order_acquire);
		if (hlen & BPF_RINGBUF_BUSY_BIT)
			break;
		uint64_t step = ringbuf_record_len(hlen & ~BPF_RINGBUF_DISCARD_BIT);
		if (__builtin_expect(step > prod - pend, 0))
			break; // corrupt; the next reservation fails below if it would reach here
		pend += step;
	}
	c->pending_pos = pend;
	*pending = pend;
	return true;
}

// Under the lock, with pending_pos at pend: whether owner slot o may be taken. Not while it
// names a record being written ([pend, prod)). Free when it is 0 or names a position not
// yet reserved (a producer that died holding the lock). Behind pend its record is done, but
// its committer frees the slot only just after, so it is taken over only once that
// process is gone (a system call, for a slot someone died holding or a corrupt one).
bool slot_free(rb_owner &o, uint64_t pend, uint64_t prod)
{
	uint64_t p1 = o.pos1.load(std::memory_order_acquire);
	if (p1 - 1 - pend < prod - pend)
		return false;
	if (p1 == 0 || p1 - 1 >= prod)
		return true;
	return !process_alive(o.tgid.load(std::memory_order_relaxed));
}

// A record reserved under the lock: its header and its owner slot.
struct rb_reservation {
	ringbuf_hdr *h;
	rb_owner *owner;
	uint64_t pos1;
};

[[gnu::always_inline]] inline bool reserve_record(bpf_ringbuf_map *rb, uint64_t size,
						  rb_reservation *r)
{
	if (size > RINGBUF_MAX_RECORD_SZ)
		return false;
	uint64_t mask = rb->mask;
	uint64_t len = ringbuf_record_len(size);
	if (len > mask + 1)
		return false;
	ringbuf_ctl *c = rb->c();
	uint32_t tgid = this_process();
	lock_guard g(c->lock);
	uint64_t prod = rb->producer_pos()->load(std::memory_order_relaxed);
	if (__builtin_expect(prod % 8, 0))
		return false;
	if (g.owner_died())
		forget_unpublished(c, prod);
	uint64_t pend;
	if (!advance_pending(rb, c, prod, &pend))
		return false;
	uint64_t next = prod + len;
	uint64_t cons = c->cons_seen;
	if (next - cons > mask) {
		cons = c->cons_seen = rb->consumer_pos()->load(std::memory_order_acquire);
		if (next - cons > mask)
			return false;
	}
	if (next - pend > mask)
		return false;
	rb_owner *owner =
		find_owner(c, prod & mask, [&](rb_owner &o) { return slot_free(o, pend, prod); });
	if (!owner)
		return false;
	owner->tgid.store(tgid, std::memory_order_relaxed);
	owner->pos1.store(prod + 1, std::memory_order_relaxed);
	size_t off = prod & mask;
	auto *h = reinterpret_cast<ringbuf_hdr *>(rb->ring_data() + off);
	h->pg_off = static_cast<uint32_t>(RINGBUF_DATA_PGOFF + off / PAGE_SIZE);
	h->len.store(static_cast<uint32_t>(size) | BPF_RINGBUF_BUSY_BIT, std::memory_order_relaxed);
	rb->producer_pos()->store(next, std::memory_order_release);
	*r = {h, owner, prod + 1};
	return true;
}

// Commit (or discard) the record of owner slot o at h. The header's compare-and-swap
// decides between this commit and a reaper; the slot stays until after it, so a producer
// that dies anywhere before leaves a record the consumer can reap. After it the slot names
// a record behind pending_pos, which a reservation takes over only once its process is
// gone (see slot_free): nothing can take it before the store below frees it.
[[gnu::always_inline]] inline void commit_owned(bpf_ringbuf_map *rb, ringbuf_hdr *h, rb_owner *o,
						uint64_t flags, bool discard)
{
	uint32_t len = h->len.load(std::memory_order_relaxed);
	if (__builtin_expect(!(len & BPF_RINGBUF_BUSY_BIT), 0))
		return;
	uint32_t done = (len & ~BPF_RINGBUF_BUSY_BIT) | (discard ? BPF_RINGBUF_DISCARD_BIT : 0u);
	// A full barrier: the consumer_pos load below cannot pass it (see waitq.h).
	if (!h->len.compare_exchange_strong(len, done, std::memory_order_seq_cst))
		return; // reaped under us: the slot is the reaper's
	o->pos1.store(0, std::memory_order_release);
	ringbuf_ctl *c = rb->c();
	// No consumer armed to sleep: nothing to decide (and no consumer_pos cache line to
	// pull from the consumer's core).
	if (!waitq_active(&c->waiters) ||
	    (flags & BPF_RB_NO_WAKEUP && !(flags & BPF_RB_FORCE_WAKEUP)))
		return;
	uint64_t cons = rb->consumer_pos()->load(std::memory_order_acquire) & rb->mask;
	if ((flags & BPF_RB_FORCE_WAKEUP) || rb->ring_data() + cons == reinterpret_cast<char *>(h))
		waitq_wake(&c->waiters);
}

} // namespace

bool is_ringbuf(const bpf_map *map) { return map->ops == &ringbuf_map_ops; }

bool is_user_ringbuf(const bpf_map *map) { return map->ops == &user_ringbuf_map_ops; }

ringbuf_view ringbuf_view_of(bpf_map *map)
{
	bpf_ringbuf_map *rb = rb_of(map);
	ringbuf_view v{};
	v.consumer_pos = rb->consumer_pos();
	v.busy = rb->busy();
	v.producer_pos = rb->producer_pos();
	v.data = rb->ring_data();
	v.mask = rb->mask;
	v.waiters = &rb->c()->waiters;
	return v;
}

void *ringbuf_reserve(bpf_map *map, uint64_t size, uint64_t flags)
{
	bpf_ringbuf_map *rb = rb_of(map);
	rb_reservation r;
	if (flags || !reserve_record(rb, size, &r))
		return nullptr;
	last_rsv = {r.h, rb, r.owner, r.pos1, views_gen.load(std::memory_order_relaxed)};
	return r.h + 1;
}

namespace {

// A commit of a record that is not this thread's last reservation: find its ring and slot.
[[gnu::noinline]] void commit_found(ringbuf_hdr *h, uint64_t flags, bool discard)
{
	bpf_ringbuf_map *rb = ring_of_record(h);
	if (!rb)
		return;
	uint64_t off = static_cast<uint64_t>(reinterpret_cast<char *>(h) - rb->ring_data());
	// The record's position: the one at this offset less than a ring behind producer_pos
	// (a reserved record lies there). Our process's slot for it; none: the record was
	// reaped (its producer taken for dead) and its header is no longer ours to write.
	uint64_t prod = rb->producer_pos()->load(std::memory_order_acquire);
	uint64_t pos1 = prod - ((prod - off) & rb->mask) + 1;
	uint32_t tgid = this_process();
	rb_owner *o = find_owner(rb->c(), off, [&](rb_owner &s) {
		return s.pos1.load(std::memory_order_acquire) == pos1 &&
		       s.tgid.load(std::memory_order_relaxed) == tgid;
	});
	if (o)
		commit_owned(rb, h, o, flags, discard);
}

} // namespace

void ringbuf_commit(void *sample, uint64_t flags, bool discard)
{
	auto *h = static_cast<ringbuf_hdr *>(sample) - 1;
	const last_reservation &last = last_rsv;
	if (__builtin_expect(last.h != h || last.gen != views_gen.load(std::memory_order_relaxed),
			     0))
		return commit_found(h, flags, discard);
	// Not forgotten: a second commit finds the slot freed by the first.
	if (__builtin_expect(last.owner->pos1.load(std::memory_order_relaxed) == last.pos1, 1))
		commit_owned(last.rb, h, last.owner, flags, discard);
}

long ringbuf_output(bpf_map *map, const void *src, uint64_t size, uint64_t flags)
{
	if (flags & ~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP))
		return -EINVAL;
	bpf_ringbuf_map *rb = rb_of(map);
	rb_reservation r;
	if (!reserve_record(rb, size, &r))
		return -EAGAIN;
	memcpy(static_cast<void *>(r.h + 1), src, size);
	commit_owned(rb, r.h, r.owner, flags, false);
	return 0;
}

bool ringbuf_reap_dead_head(bpf_map *map)
{
	bpf_ringbuf_map *rb = rb_of(map);
	ringbuf_ctl *c = rb->c();
	uint64_t cons = rb->consumer_pos()->load(std::memory_order_acquire);
	uint64_t prod = rb->producer_pos()->load(std::memory_order_acquire);
	if (cons == prod || cons % 8 || prod - cons > rb->mask + 1)
		return false;
	ringbuf_hdr *h = rb->hdr_at(cons);
	uint32_t len = h->len.load(std::memory_order_acquire);
	if (!(len & BPF_RINGBUF_BUSY_BIT))
		return false;
	uint64_t p1 = cons + 1;
	rb_owner *o = find_owner(c, cons & rb->mask, [&](rb_owner &s) {
		return s.pos1.load(std::memory_order_acquire) == p1;
	});
	if (!o || process_alive(o->tgid.load(std::memory_order_relaxed)))
		return false;
	// Take the slot, then the header: a commit that still found the slot races us for
	// the header, and one of the two compare-and-swaps fails.
	if (!o->pos1.compare_exchange_strong(p1, 0, std::memory_order_seq_cst))
		return false;
	uint32_t dead = (len & ~BPF_RINGBUF_BUSY_BIT) | BPF_RINGBUF_DISCARD_BIT;
	return h->len.compare_exchange_strong(len, dead, std::memory_order_seq_cst);
}

namespace {

constexpr long USER_RINGBUF_MAX_SAMPLES = 128 * 1024;
constexpr uint32_t DYNPTR_MAX_SIZE = (1u << 24) - 1;
// Compare-and-swaps a drain may spend replacing drainers found dead (the word can change
// under us only if another drainer took it, or the region is being scribbled on).
constexpr int DRAIN_TAKEOVER_TRIES = 4;

uint64_t drainer_word(thread_id t) { return uint64_t{t.tgid} << 32 | t.tid; }

bool drainer_alive(uint64_t word)
{
	auto tgid = static_cast<uint32_t>(word >> 32), tid = static_cast<uint32_t>(word);
	if (!tgid || !tid || tgid > PID_MAX_LIMIT || tid > PID_MAX_LIMIT)
		return false;
	return syscall(SYS_tgkill, static_cast<pid_t>(tgid), static_cast<pid_t>(tid), 0) == 0 ||
	       errno != ESRCH;
}

// Take the drain: the busy word goes from 0, or from a drainer that is gone, to us, in one
// compare-and-swap that names process and thread together. false: a live drainer has it
// (this thread itself, in a drain from inside a drain, as the kernel's EBUSY).
bool drain_begin(std::atomic<uint64_t> *busy, uint64_t me)
{
	uint64_t cur = 0;
	for (int i = 0; i < DRAIN_TAKEOVER_TRIES; i++) {
		if (busy->compare_exchange_strong(cur, me, std::memory_order_acquire))
			return true;
		if (drainer_alive(cur))
			return false;
	}
	return false;
}

// The next record of a user ring, checked as the kernel checks what user space wrote:
// 0 with the record, -ENODATA (none, or the next still BUSY), -EAGAIN (discarded:
// skipped), -EINVAL or -E2BIG (a header no producer should have written), -EFAULT (a
// consumer position only a corrupt region holds). *cons is the record's position.
int user_ringbuf_peek(bpf_ringbuf_map *rb, uint64_t *cons_out, void **sample, uint32_t *size)
{
	uint64_t prod = rb->producer_pos()->load(std::memory_order_acquire);
	if (prod % 8)
		return -EINVAL;
	uint64_t cons = rb->consumer_pos()->load(std::memory_order_acquire);
	if (cons >= prod)
		return -ENODATA;
	if (cons % 8)
		return -EFAULT;
	uint32_t len = rb->hdr_at(cons)->len.load(std::memory_order_acquire);
	uint32_t flags = len & (BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
	uint32_t sample_len = len & ~flags;
	uint64_t total = ringbuf_record_len(sample_len);
	if (total > prod - cons)
		return -EINVAL;
	if (total > rb->mask + 1 || sample_len > DYNPTR_MAX_SIZE)
		return -E2BIG;
	if (flags & BPF_RINGBUF_DISCARD_BIT) {
		rb->consumer_pos()->store(cons + total, std::memory_order_release);
		return -EAGAIN;
	}
	if (flags & BPF_RINGBUF_BUSY_BIT)
		return -ENODATA;
	*cons_out = cons;
	*sample = rb->ring_data() + ((cons + BPF_RINGBUF_HDR_SZ) & rb->mask);
	*size = sample_len;
	return 0;
}

} // namespace

long user_ringbuf_drain(bpf_map *map, user_ringbuf_callback cb, void *ctx, uint64_t flags)
{
	if (flags & ~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP))
		return -EINVAL;
	bpf_ringbuf_map *rb = rb_of(map);
	uint64_t me = drainer_word(current_thread());
	if (!drain_begin(rb->busy(), me))
		return -EBUSY;
	long samples = 0, discarded = 0, ret = 0;
	for (; samples < USER_RINGBUF_MAX_SAMPLES && ret == 0; samples++) {
		uint64_t cons;
		void *sample;
		uint32_t size;
		int err = user_ringbuf_peek(rb, &cons, &sample, &size);
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
		rb->consumer_pos()->store(cons + ringbuf_record_len(size),
					  std::memory_order_release);
	}
	if (ret >= 0)
		ret = samples - discarded;
	// Only our own word goes back to 0 (a scribbled one stays for the next drainer to judge).
	rb->busy()->compare_exchange_strong(me, 0, std::memory_order_seq_cst);
	// Producers waiting for room (epoll, EPOLLOUT) are woken as the kernel wakes them.
	waitq *wq = &rb->c()->waiters;
	if ((flags & BPF_RB_FORCE_WAKEUP) || (!(flags & BPF_RB_NO_WAKEUP) && samples > 0))
		if (waitq_active(wq))
			waitq_wake(wq);
	return ret;
}

void *user_ringbuf_reserve(bpf_map *map, uint64_t size, int *err)
{
	bpf_ringbuf_map *rb = rb_of(map);
	if (size & (BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT) || size > UINT32_MAX) {
		*err = E2BIG;
		return nullptr;
	}
	ringbuf_ctl *c = rb->c();
	uint64_t ring_size = rb->mask + 1;
	uint64_t total = ringbuf_record_len(size);
	if (total > ring_size) {
		*err = E2BIG;
		return nullptr;
	}
	lock_guard g(c->lock);
	uint64_t cons = rb->consumer_pos()->load(std::memory_order_acquire);
	uint64_t prod = rb->producer_pos()->load(std::memory_order_relaxed);
	if (prod % 8 || prod - cons > ring_size) {
		*err = EFAULT;
		return nullptr;
	}
	if (ring_size - (prod - cons) < total) {
		*err = ENOSPC;
		return nullptr;
	}
	ringbuf_hdr *h = rb->hdr_at(prod);
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
	switch (flags) {
	case uapi::BPF_RB_AVAIL_DATA:
		return rb->producer_pos()->load(std::memory_order_acquire) -
		       rb->consumer_pos()->load(std::memory_order_acquire);
	case uapi::BPF_RB_RING_SIZE:
		return rb->mask + 1;
	case uapi::BPF_RB_CONS_POS:
		return rb->consumer_pos()->load(std::memory_order_acquire);
	case uapi::BPF_RB_PROD_POS:
		return rb->producer_pos()->load(std::memory_order_acquire);
	default:
		return 0;
	}
}

namespace {

// The kernel's pages of a ring's fd: consumer page, producer page, the data twice.
int ringbuf_pages_check(const bpf_map *map, size_t pgoff, size_t pages)
{
	size_t total = RINGBUF_POS_PAGES + 2 * (map->max_entries / PAGE_SIZE);
	if (pgoff > total || pages > total - pgoff)
		return -EINVAL;
	return 0;
}

size_t first_page(size_t off) { return off / PAGE_SIZE; }
size_t page_count(size_t len) { return (len + PAGE_SIZE - 1) / PAGE_SIZE; }

// RINGBUF: user space consumes, so a writable mapping may cover the consumer page alone
// (to advance its position); the producer's page and the data are the program side's.
int ringbuf_map_mmap_check_kern(const bpf_map *map, bool write, size_t len, size_t off)
{
	if (write && (first_page(off) != 0 || page_count(len) != 1))
		return -EPERM;
	return ringbuf_pages_check(map, first_page(off), page_count(len));
}

// USER_RINGBUF: user space produces, so a writable mapping may cover anything but the
// consumer page (the producer writes its position and the data).
int ringbuf_map_mmap_check_user(const bpf_map *map, bool write, size_t len, size_t off)
{
	if (write && first_page(off) == 0)
		return -EPERM;
	return ringbuf_pages_check(map, first_page(off), page_count(len));
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
	size_t first_copy_end =
		RINGBUF_POS_PAGES * PAGE_SIZE + data_len; // in the ring's page space
	size_t start = static_cast<size_t>(off), end = start + round_up(len, PAGE_SIZE);
	if (end <= first_copy_end)
		return raw(addr, len, prot, flags, fd, off);
	if (start >= first_copy_end)
		return raw(addr, len, prot, flags, fd, static_cast<off_t>(start - data_len));
	void *p = raw(addr, end - start, PROT_NONE,
		      MAP_PRIVATE | MAP_ANONYMOUS | (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)), -1,
		      0);
	if (p == MAP_FAILED)
		return p;
	char *base = static_cast<char *>(p);
	size_t head = first_copy_end - start;
	int fixed = (flags & ~MAP_FIXED_NOREPLACE) | MAP_FIXED;
	if (raw(base, head, prot, fixed, fd, off) == MAP_FAILED ||
	    raw(base + head, end - start - head, prot, fixed, fd, RINGBUF_POS_PAGES * PAGE_SIZE) ==
		    MAP_FAILED) {
		int e = errno;
		syscall(SYS_munmap, p, end - start);
		errno = e;
		return MAP_FAILED;
	}
	return p;
}

// Whether the ring holds no record, written or being written.
bool ringbuf_empty(bpf_ringbuf_map *rb)
{
	return rb->producer_pos()->load(std::memory_order_acquire) ==
	       rb->consumer_pos()->load(std::memory_order_acquire);
}

// RINGBUF: readable while it holds a record, also while the next one is still BUSY, as in
// the kernel. Its consumer then finds nothing to read and polls again at once, for ever if
// the record's producer died: so a poll that waits for EPOLLIN first discards such a record.
uint32_t ringbuf_map_poll_kern(bpf_map *map, map_poll_table *pt)
{
	bpf_ringbuf_map *rb = rb_of(map);
	pt->queue = &rb->c()->waiters;
	if (ringbuf_empty(rb))
		return 0;
	if (pt->events & EPOLLIN)
		ringbuf_reap_dead_head(map);
	return EPOLLIN;
}

// USER_RINGBUF: writable once empty (its producers wait for a drain to finish; the kernel
// says writable as soon as there is any room).
uint32_t ringbuf_map_poll_user(bpf_map *map, map_poll_table *pt)
{
	bpf_ringbuf_map *rb = rb_of(map);
	pt->queue = &rb->c()->waiters;
	return ringbuf_empty(rb) ? static_cast<uint32_t>(EPOLLOUT) : 0;
}

} // namespace

// The two types have the same layout and commands; they differ in which side produces,
// which decides what user space may map writable and what epoll waits for.
const bpf_map_ops ringbuf_map_ops = {
	.map_alloc_check = ringbuf_map_alloc_check,
	.map_mem_size = ringbuf_map_mem_size,
	.map_alloc = ringbuf_map_alloc,
	.map_init = ringbuf_map_init,
	.map_attach = ringbuf_map_attach,
	.map_lookup_elem = ringbuf_map_lookup_elem,
	.map_copy_value = ringbuf_map_copy_value,
	.map_update_elem = ringbuf_map_update_elem,
	.map_update_value = ringbuf_map_update_elem,
	.map_delete_elem = ringbuf_map_delete_elem,
	.map_get_next_key = ringbuf_map_get_next_key,
	.map_mmap_check = ringbuf_map_mmap_check_kern,
	.map_mmap = ringbuf_map_mmap,
	.map_poll = ringbuf_map_poll_kern,
};

const bpf_map_ops user_ringbuf_map_ops = {
	.map_alloc_check = ringbuf_map_alloc_check,
	.map_mem_size = ringbuf_map_mem_size,
	.map_alloc = ringbuf_map_alloc,
	.map_init = ringbuf_map_init,
	.map_attach = ringbuf_map_attach,
	.map_lookup_elem = ringbuf_map_lookup_elem,
	.map_copy_value = ringbuf_map_copy_value,
	.map_update_elem = ringbuf_map_update_elem,
	.map_update_value = ringbuf_map_update_elem,
	.map_delete_elem = ringbuf_map_delete_elem,
	.map_get_next_key = ringbuf_map_get_next_key,
	.map_mmap_check = ringbuf_map_mmap_check_user,
	.map_mmap = ringbuf_map_mmap,
	.map_poll = ringbuf_map_poll_user,
};

} // namespace bpfmap
