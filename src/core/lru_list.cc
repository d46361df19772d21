#include "core/lru_list.h"

#include <algorithm>

#include "core/map.h"
#include "core/percpu.h"

namespace bpfmap {
namespace {

constexpr uint32_t LOCAL_FREE_TARGET = 128;
constexpr uint32_t LOCAL_NR_SCANS = LOCAL_FREE_TARGET;
constexpr uint32_t PERCPU_FREE_TARGET = 4;
constexpr uint32_t PERCPU_NR_SCANS = PERCPU_FREE_TARGET;

bool is_local_type(uint8_t t) { return t >= LRU_LOCAL_FREE; }

// ---- index lists ------------------------------------------------------------------------

struct links {
	lru_node *n;
	uint32_t total; // nodes and heads

	bool ok(uint32_t i) const { return i < total; }
	uint32_t next(uint32_t i) const { return n[i].next; }
	uint32_t prev(uint32_t i) const { return n[i].prev; }
	bool empty(uint32_t head) const { return n[head].next == head; }
	void init(uint32_t head) { n[head].prev = n[head].next = head; }

	void del(uint32_t i)
	{
		uint32_t p = n[i].prev, x = n[i].next;
		if (ok(p) && ok(x)) {
			n[x].prev = p;
			n[p].next = x;
		}
	}
	// Insert i after head. The new node's own links first: a holder dying in between
	// leaves walks in either direction on valid nodes.
	void add(uint32_t i, uint32_t head)
	{
		uint32_t x = n[head].next;
		n[i].next = x;
		n[i].prev = head;
		if (ok(x))
			n[x].prev = i;
		n[head].next = i;
	}
	void move(uint32_t i, uint32_t head)
	{
		del(i);
		add(i, head);
	}
};

struct ctx {
	bpf_lru *lru;
	links L;
	uint32_t nr_scans;
	uint32_t local_cpu = 0; // the CPU whose local free list move_to_free(LRU_LOCAL_FREE) fills

	explicit ctx(bpf_lru *l)
		: lru(l)
		, L{l->nodes, l->n_nodes}
		, nr_scans(l->nr_scans)
	{
	}

	// The heads of a list set's lists and of a CPU's local lists follow from the layout
	// (lru_layout): computed, never read from the region. A ctx works on one list set at
	// a time, the one list_set() returned last.
	uint32_t set_heads = 0;
	lru_list *list_set(uint32_t s)
	{
		set_heads = lru->n_elems + 3 * s;
		return &lru->lists[s];
	}
	uint32_t set_head(uint32_t t) const { return set_heads + t; }
	uint32_t free_head(uint32_t cpu) const { return lru->locals_head + 2 * cpu; }
	uint32_t pending_head(uint32_t cpu) const { return free_head(cpu) + 1; }

	// An element's node: every walk stops at anything else (its own head, or, in a list
	// a dead holder left half relinked, some other head).
	bool is_elem(uint32_t i) const { return i < lru->n_elems; }

	// The next two run under a lock whose previous holder died (lock_guard::owner_died()),
	// or that was taken over from a word naming no holder (core/lock.h).

	// Relink list set l from the node types: its nodes are those whose type is one of its
	// lists (and, for a per-CPU set, whose cpu is its CPU). Order is lost, not membership.
	void relink_list_set(lru_list *l, int cpu)
	{
		for (uint32_t t = 0; t < 3; t++)
			L.init(set_head(t));
		l->count[0] = l->count[1] = 0;
		l->next_inactive_rotation = set_head(LRU_INACTIVE);
		for (uint32_t i = 0; i < lru->n_elems; i++) {
			uint8_t t = node(i).type.load(std::memory_order_relaxed);
			if (t > LRU_FREE || (cpu >= 0 && node(i).cpu != cpu))
				continue;
			L.add(i, set_head(t));
			count_inc(l, t);
		}
	}
	void relink_local(uint32_t cpu)
	{
		L.init(free_head(cpu));
		L.init(pending_head(cpu));
		for (uint32_t i = 0; i < lru->n_elems; i++) {
			uint8_t t = node(i).type.load(std::memory_order_relaxed);
			if (node(i).cpu != cpu || (t != LRU_LOCAL_FREE && t != LRU_LOCAL_PENDING))
				continue;
			L.add(i, t == LRU_LOCAL_FREE ? free_head(cpu) : pending_head(cpu));
		}
	}

	lru_node &node(uint32_t i) { return lru->nodes[i]; }
	// The CPU whose lists hold node i, as the node says; CPU 0 if it names none.
	uint32_t cpu_of(uint32_t i)
	{
		uint32_t cpu = node(i).cpu;
		return cpu < lru->nr_cpus ? cpu : 0;
	}
	bool is_ref(uint32_t i) { return lru_ref(lru, i).load(std::memory_order_relaxed); }
	void clear_ref(uint32_t i) { lru_ref(lru, i).store(0, std::memory_order_relaxed); }
	bool pending_free(uint32_t i)
	{
		return node(i).pending_free.load(std::memory_order_relaxed);
	}
	bool del_from_htab(uint32_t i) { return lru->del_from_htab(lru->del_arg, i); }
	// Walks that may cover a whole list stop after this many steps.
	uint32_t max_steps() const { return L.total; }

	void count_inc(lru_list *l, uint8_t t)
	{
		if (t < 2)
			l->count[t]++;
	}
	void count_dec(lru_list *l, uint8_t t)
	{
		if (t < 2)
			l->count[t]--;
	}

	// Keep the inactive rotation's cursor off a node that leaves its place. (What it is
	// left at is checked where it is used.)
	void step_cursor_off(lru_list *l, uint32_t i)
	{
		if (l->next_inactive_rotation == i)
			l->next_inactive_rotation = L.prev(i);
	}

	// A node of l's lists to free_list (the global free list or a local one).
	void move_to_free(lru_list *l, uint32_t i, uint32_t free_list, uint8_t free_type)
	{
		uint8_t t = node(i).type.load(std::memory_order_relaxed);
		if (is_local_type(t))
			return;
		step_cursor_off(l, i);
		count_dec(l, t);
		if (free_type == LRU_LOCAL_FREE)
			node(i).cpu = static_cast<uint16_t>(local_cpu);
		node(i).type.store(free_type, std::memory_order_relaxed);
		node(i).pending_free.store(0, std::memory_order_relaxed);
		L.move(i, free_list);
	}

	// A node of a local list into one of l's lists.
	void move_in(lru_list *l, uint32_t i, uint8_t type)
	{
		count_inc(l, type);
		node(i).type.store(type, std::memory_order_relaxed);
		clear_ref(i);
		if (type == LRU_FREE)
			node(i).pending_free.store(0, std::memory_order_relaxed);
		L.move(i, set_head(type));
	}

	// Between or within l's lists, to the head.
	void move(lru_list *l, uint32_t i, uint8_t type)
	{
		uint8_t t = node(i).type.load(std::memory_order_relaxed);
		if (is_local_type(t))
			return;
		if (t != type) {
			count_dec(l, t);
			count_inc(l, type);
			node(i).type.store(type, std::memory_order_relaxed);
		}
		clear_ref(i);
		step_cursor_off(l, i);
		L.move(i, set_head(type));
	}

	// From the active tail: referenced nodes go back to the active head with the bit
	// cleared, the others to the inactive head.
	void rotate_active(lru_list *l)
	{
		uint32_t head = set_head(LRU_ACTIVE);
		uint32_t first = L.next(head);
		uint32_t i = 0;
		for (uint32_t x = L.prev(head); is_elem(x);) {
			uint32_t before = L.prev(x);
			move(l, x, is_ref(x) ? LRU_ACTIVE : LRU_INACTIVE);
			if (++i == nr_scans || x == first)
				break;
			x = before;
		}
	}

	// From the rotation cursor towards the head, wrapping: referenced nodes go to active;
	// the rest stay for the next shrink.
	void rotate_inactive(lru_list *l)
	{
		uint32_t head = set_head(LRU_INACTIVE);
		if (L.empty(head))
			return;
		uint32_t cursor = l->next_inactive_rotation;
		if (!L.ok(cursor))
			cursor = head;
		uint32_t last = L.next(cursor);
		if (last == head)
			last = L.next(last);
		uint32_t cur = cursor, before = head;
		uint32_t i = 0, steps = 0;
		while (i < nr_scans && (is_elem(cur) || cur == head) && ++steps <= max_steps()) {
			if (cur == head) {
				cur = L.prev(cur);
				continue;
			}
			before = L.prev(cur);
			if (is_ref(cur))
				move(l, cur, LRU_ACTIVE);
			if (cur == last)
				break;
			cur = before;
			i++;
		}
		l->next_inactive_rotation = is_elem(before) ? before : head;
	}

	// From the inactive tail: referenced nodes to active, the others evicted to free_list.
	uint32_t shrink_inactive(lru_list *l, uint32_t want, uint32_t free_list, uint8_t free_type)
	{
		uint32_t head = set_head(LRU_INACTIVE);
		uint32_t done = 0, i = 0;
		for (uint32_t x = L.prev(head); is_elem(x);) {
			uint32_t before = L.prev(x);
			if (is_ref(x) && !pending_free(x)) {
				move(l, x, LRU_ACTIVE);
			} else if (pending_free(x) || del_from_htab(x)) {
				move_to_free(l, x, free_list, free_type);
				if (++done == want)
					break;
			}
			if (++i == nr_scans)
				break;
			x = before;
		}
		return done;
	}

	// Shrink the inactive list; failing that, evict one node ignoring reference bits,
	// from the inactive list if it has any, else from the active one.
	uint32_t shrink(lru_list *l, uint32_t want, uint32_t free_list, uint8_t free_type)
	{
		if (uint32_t done = shrink_inactive(l, want, free_list, free_type))
			return done;
		uint32_t head = L.empty(set_head(LRU_INACTIVE)) ? set_head(LRU_ACTIVE)
								: set_head(LRU_INACTIVE);
		uint32_t steps = 0;
		for (uint32_t x = L.prev(head); is_elem(x) && ++steps <= max_steps();) {
			uint32_t before = L.prev(x);
			if (pending_free(x) || del_from_htab(x)) {
				move_to_free(l, x, free_list, free_type);
				return 1;
			}
			x = before;
		}
		return 0;
	}

	void rotate(lru_list *l)
	{
		if (l->count[LRU_INACTIVE] < l->count[LRU_ACTIVE])
			rotate_active(l);
		rotate_inactive(l);
	}

	// A CPU's pending nodes into the global lists, oldest first.
	void flush_local(lru_list *l, uint32_t cpu)
	{
		uint32_t head = pending_head(cpu), steps = 0;
		for (uint32_t x = L.prev(head); is_elem(x) && ++steps <= max_steps();) {
			uint32_t before = L.prev(x);
			if (pending_free(x))
				move_in(l, x, LRU_FREE);
			else
				move_in(l, x, is_ref(x) ? LRU_ACTIVE : LRU_INACTIVE);
			x = before;
		}
	}

	// Refill a CPU's local free list from the global lists (its lock held).
	void pop_free_to_local(uint32_t cpu)
	{
		lru_list *l = list_set(0);
		lock_guard g(l->lock);
		if (g.owner_died())
			relink_list_set(l, -1);
		local_cpu = cpu;
		flush_local(l, cpu);
		rotate(l);
		uint32_t target = lru->target_free, got = 0;
		uint32_t head = set_head(LRU_FREE), steps = 0;
		for (uint32_t x = L.next(head); is_elem(x) && ++steps <= max_steps();) {
			uint32_t after = L.next(x);
			move_to_free(l, x, free_head(cpu), LRU_LOCAL_FREE);
			if (++got == target)
				break;
			x = after;
		}
		if (got < target)
			shrink(l, target - got, free_head(cpu), LRU_LOCAL_FREE);
	}

	uint32_t local_pop_free(uint32_t cpu)
	{
		uint32_t x = L.next(free_head(cpu));
		if (!is_elem(x))
			return LRU_NIL;
		L.del(x);
		return x;
	}

	void local_add_pending(uint32_t cpu, uint32_t x)
	{
		node(x).cpu = static_cast<uint16_t>(cpu);
		node(x).type.store(LRU_LOCAL_PENDING, std::memory_order_relaxed);
		node(x).pending_free.store(0, std::memory_order_relaxed);
		clear_ref(x);
		L.add(x, pending_head(cpu));
	}

	// The oldest pending node that can be taken back from the table: unreferenced ones
	// first, then any.
	uint32_t local_pop_pending(uint32_t cpu)
	{
		for (bool force : {false, true}) {
			uint32_t head = pending_head(cpu), steps = 0;
			for (uint32_t x = L.prev(head); is_elem(x) && ++steps <= max_steps();
			     x = L.prev(x)) {
				if ((!is_ref(x) || force) &&
				    (pending_free(x) || del_from_htab(x))) {
					L.del(x);
					return x;
				}
			}
		}
		return LRU_NIL;
	}

	uint32_t percpu_pop_free(uint32_t cpu)
	{
		lru_list *l = list_set(cpu);
		lock_guard g(l->lock);
		if (g.owner_died())
			relink_list_set(l, static_cast<int>(cpu));
		rotate(l);
		uint32_t free_list = set_head(LRU_FREE);
		if (L.empty(free_list))
			shrink(l, PERCPU_FREE_TARGET, free_list, LRU_FREE);
		uint32_t x = L.next(free_list);
		if (!is_elem(x))
			return LRU_NIL;
		clear_ref(x);
		move(l, x, LRU_INACTIVE);
		return x;
	}

	uint32_t common_pop_free(uint32_t cpu)
	{
		lru_local *loc = &lru->locals[cpu];
		uint32_t x;
		{
			lock_guard g(loc->lock);
			if (g.owner_died())
				relink_local(cpu);
			x = local_pop_free(cpu);
			if (x == LRU_NIL) {
				pop_free_to_local(cpu);
				x = local_pop_free(cpu);
			}
			if (x != LRU_NIL) {
				local_add_pending(cpu, x);
				return x;
			}
		}
		// Nothing here or globally: steal from the CPUs' local lists, round robin from
		// where this CPU stopped last time.
		uint32_t first = loc->next_steal.load(std::memory_order_relaxed) % lru->nr_cpus,
			 steal = first;
		do {
			lru_local *victim = &lru->locals[steal];
			{
				lock_guard g(victim->lock);
				if (g.owner_died())
					relink_local(steal);
				x = local_pop_free(steal);
				if (x == LRU_NIL)
					x = local_pop_pending(steal);
				// In no list set until it is on ours: no repair may claim it.
				if (x != LRU_NIL)
					node(x).type.store(LRU_STOLEN, std::memory_order_relaxed);
			}
			steal = (steal + 1) % lru->nr_cpus;
		} while (x == LRU_NIL && steal != first);
		loc->next_steal.store(steal, std::memory_order_relaxed);
		if (x == LRU_NIL)
			return LRU_NIL;
		lock_guard g(loc->lock);
		if (g.owner_died())
			relink_local(cpu);
		local_add_pending(cpu, x);
		return x;
	}

	void common_push_free(uint32_t x)
	{
		uint8_t t = node(x).type.load(std::memory_order_relaxed);
		if (t == LRU_FREE || t == LRU_LOCAL_FREE)
			return;
		if (t == LRU_LOCAL_PENDING) {
			uint32_t cpu = cpu_of(x);
			lru_local *loc = &lru->locals[cpu];
			lock_guard g(loc->lock);
			if (g.owner_died())
				relink_local(cpu);
			if (node(x).type.load(std::memory_order_relaxed) == LRU_LOCAL_PENDING) {
				node(x).type.store(LRU_LOCAL_FREE, std::memory_order_relaxed);
				clear_ref(x);
				L.move(x, free_head(cpu));
				return;
			}
		}
		lru_list *l = list_set(0);
		lock_guard g(l->lock);
		if (g.owner_died())
			relink_list_set(l, -1);
		move(l, x, LRU_FREE);
	}

	void percpu_push_free(uint32_t x)
	{
		uint32_t cpu = cpu_of(x);
		lru_list *l = list_set(cpu);
		lock_guard g(l->lock);
		if (g.owner_died())
			relink_list_set(l, static_cast<int>(cpu));
		move(l, x, LRU_FREE);
	}
};

struct layout {
	uint64_t lists_off, locals_off, nodes_off, size;
};

// The list heads are nodes too, numbered after the n elements' nodes: list set s's three
// from n + 3s, then CPU c's local free and pending heads at n + 3 * n_lists + 2c and the
// next (lru_init hands them out in that order; ctx::set_head and ctx::free_head compute them).
layout lru_layout(uint32_t n, uint32_t nr_cpus, bool percpu)
{
	layout y;
	uint32_t n_lists = percpu ? nr_cpus : 1, n_locals = percpu ? 0 : nr_cpus;
	uint32_t n_heads = 3 * n_lists + 2 * n_locals;
	y.lists_off = round_up(sizeof(lru_shared), 64);
	y.locals_off = y.lists_off + static_cast<uint64_t>(n_lists) * sizeof(lru_list);
	y.nodes_off = y.locals_off + static_cast<uint64_t>(n_locals) * sizeof(lru_local);
	y.size = round_up(y.nodes_off + static_cast<uint64_t>(n + n_heads) * sizeof(lru_node), 64);
	return y;
}

// Nodes a CPU takes into its local free list at a time.
uint32_t target_free(uint32_t n, uint32_t nr_cpus)
{
	return std::clamp(n / nr_cpus / 2, 1u, LOCAL_FREE_TARGET);
}

void init_list_set(links &L, lru_list *l, uint32_t *next_head)
{
	l->lock.init();
	for (uint32_t t = 0; t < 3; t++) {
		l->head[t] = (*next_head)++;
		L.init(l->head[t]);
	}
	l->count[0] = l->count[1] = 0;
	l->next_inactive_rotation = l->head[LRU_INACTIVE];
}

void init_node_free(lru_node &x, uint16_t cpu)
{
	x.type.store(LRU_FREE, std::memory_order_relaxed);
	x.pending_free.store(0, std::memory_order_relaxed);
	x.cpu = cpu;
}

} // namespace

size_t lru_size(uint32_t n, uint32_t nr_cpus, bool percpu)
{
	return lru_layout(n, nr_cpus, percpu).size;
}

void lru_init(void *mem, uint32_t n, uint32_t nr_cpus, bool percpu)
{
	layout y = lru_layout(n, nr_cpus, percpu);
	auto *sh = static_cast<lru_shared *>(mem);
	char *base = static_cast<char *>(mem);
	uint32_t n_lists = percpu ? nr_cpus : 1, n_locals = percpu ? 0 : nr_cpus;
	sh->n_elems = n;
	sh->n_nodes = n + 3 * n_lists + 2 * n_locals;
	sh->nr_cpus = nr_cpus;
	sh->percpu = percpu;
	sh->nr_scans = percpu ? PERCPU_NR_SCANS : LOCAL_NR_SCANS;
	sh->target_free = target_free(n, nr_cpus);
	sh->lists_off = y.lists_off;
	sh->locals_off = y.locals_off;
	sh->nodes_off = y.nodes_off;
	auto *lists = reinterpret_cast<lru_list *>(base + y.lists_off);
	auto *locals = reinterpret_cast<lru_local *>(base + y.locals_off);
	auto *nodes = reinterpret_cast<lru_node *>(base + y.nodes_off);
	links L{nodes, sh->n_nodes};
	uint32_t next_head = n;
	for (uint32_t c = 0; c < n_lists; c++)
		init_list_set(L, &lists[c], &next_head);
	for (uint32_t c = 0; c < n_locals; c++) {
		locals[c].lock.init();
		locals[c].free_head = next_head++;
		locals[c].pending_head = next_head++;
		L.init(locals[c].free_head);
		L.init(locals[c].pending_head);
		locals[c].next_steal.store(c, std::memory_order_relaxed);
	}
	if (!percpu) {
		for (uint32_t i = 0; i < n; i++) {
			init_node_free(nodes[i], 0);
			L.add(i, lists[0].head[LRU_FREE]);
		}
		return;
	}
	// Each CPU gets an equal run of consecutive nodes (n is a multiple of nr_cpus).
	uint32_t per_cpu = n / nr_cpus;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t cpu = std::min(i / per_cpu, nr_cpus - 1);
		init_node_free(nodes[i], static_cast<uint16_t>(cpu));
		L.add(i, lists[cpu].head[LRU_FREE]);
	}
}

void lru_attach(bpf_lru *lru, void *mem, uint32_t n, uint32_t nr_cpus, bool percpu, char *ref_base,
		size_t ref_stride, bool (*del_from_htab)(void *, uint32_t), void *arg)
{
	layout y = lru_layout(n, nr_cpus, percpu);
	char *base = static_cast<char *>(mem);
	uint32_t n_lists = percpu ? nr_cpus : 1, n_locals = percpu ? 0 : nr_cpus;
	lru->lists = reinterpret_cast<lru_list *>(base + y.lists_off);
	lru->locals = reinterpret_cast<lru_local *>(base + y.locals_off);
	lru->nodes = reinterpret_cast<lru_node *>(base + y.nodes_off);
	lru->n_elems = n;
	lru->n_nodes = n + 3 * n_lists + 2 * n_locals;
	lru->nr_cpus = nr_cpus;
	lru->locals_head = n + 3 * n_lists;
	lru->target_free = target_free(n, nr_cpus);
	lru->nr_scans = percpu ? PERCPU_NR_SCANS : LOCAL_NR_SCANS;
	lru->percpu = percpu;
	lru->ref_base = ref_base;
	lru->ref_stride = ref_stride;
	lru->del_from_htab = del_from_htab;
	lru->del_arg = arg;
}

uint32_t lru_pop_free(bpf_lru *lru)
{
	ctx c(lru);
	uint32_t cpu = this_cpu_slot(lru->nr_cpus);
	return lru->percpu ? c.percpu_pop_free(cpu) : c.common_pop_free(cpu);
}

void lru_push_free(bpf_lru *lru, uint32_t idx)
{
	if (idx >= lru->n_elems)
		return;
	ctx c(lru);
	if (lru->percpu)
		c.percpu_push_free(idx);
	else
		c.common_push_free(idx);
}

} // namespace bpfmap
