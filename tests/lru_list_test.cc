// The LRU lists (core/lru_list.h) over a region another process may have overwritten: bad
// list heads, links, cursors, node types, counts, lock words, random words anywhere. No
// operation may touch memory outside the region (it sits between pages that are not
// mapped: the node array's end is followed by more than any 32-bit index can reach), hand
// the table an element index past the end, or take long; corrupt lists may give wrong
// evictions, or no node (LRU_NIL, which an update turns into ENOMEM).
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "core/lru_list.h"
#include "test_util.h"

using namespace bpfmap;

namespace {

constexpr size_t PAGE = 4096;
constexpr size_t GiB = size_t{1} << 30;

// size bytes that end where reach bytes of unmapped address space begin, after an
// unmapped page.
class guarded_mem {
public:
	guarded_mem(size_t size, size_t reach)
	{
		size_t body = (size + PAGE - 1) / PAGE * PAGE;
		len_ = PAGE + body + reach;
		void *p = mmap(nullptr, len_, PROT_NONE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		EXPECT_NE(p, MAP_FAILED);
		base_ = static_cast<char *>(p);
		EXPECT_EQ(mprotect(base_ + PAGE, body, PROT_READ | PROT_WRITE), 0);
		mem_ = base_ + PAGE + (body - size);
	}
	~guarded_mem() { munmap(base_, len_); }
	char *get() const { return mem_; }
	guarded_mem(const guarded_mem &) = delete;
	guarded_mem &operator=(const guarded_mem &) = delete;

private:
	char *base_;
	char *mem_;
	size_t len_;
};

// The hash table's side: which elements are linked in it. The LRU evicts through del().
struct fake_table {
	std::vector<uint8_t> in;
	uint32_t bad_index = 0; // indices past the end the LRU asked to evict

	static bool del(void *arg, uint32_t idx)
	{
		auto *t = static_cast<fake_table *>(arg);
		if (idx >= t->in.size()) {
			t->bad_index++;
			return false;
		}
		if (!t->in[idx])
			return false;
		t->in[idx] = 0;
		return true;
	}
};

struct lru_fixture {
	uint32_t n, nr_cpus;
	bool percpu;
	size_t size;
	guarded_mem region;
	guarded_mem refs; // one reference byte per element
	fake_table table;
	bpf_lru lru;
	uint32_t nil = 0;	    // pops that found no node
	std::vector<uint32_t> live; // elements in the table, as the test added them

	lru_fixture(uint32_t n_, uint32_t cpus, bool pc)
		: n(n_)
		, nr_cpus(cpus)
		, percpu(pc)
		, size(lru_size(n_, cpus, pc))
		, region(size, 64 * GiB + PAGE)
		, refs(n_, 4 * GiB + PAGE)
	{
		table.in.assign(n, 0);
		lru_init(region.get(), n, nr_cpus, percpu);
		lru_attach(&lru, region.get(), n, nr_cpus, percpu, refs.get(), 1, fake_table::del,
			   &table);
	}

	uint32_t head(uint32_t set, uint32_t t) const { return n + 3 * set + t; }
	uint32_t n_heads() const { return lru.n_nodes - n; }

	// One timed LRU call; none may take a second.
	template <typename F> auto timed(F &&f)
	{
		auto t0 = std::chrono::steady_clock::now();
		auto r = f();
		EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
		return r;
	}

	// An insert (a node for a new element), a delete (its node back), or a lookup (its
	// reference bit), as a hash table does them.
	void step(std::mt19937 &rng)
	{
		uint32_t op = rng() % 8;
		if (op < 4 || live.empty()) {
			uint32_t x = timed([&] { return lru_pop_free(&lru); });
			if (x == LRU_NIL) {
				nil++;
				return;
			}
			ASSERT_LT(x, n);
			table.in[x] = 1;
			live.push_back(x);
		} else if (op < 6) {
			size_t k = rng() % live.size();
			uint32_t x = live[k];
			live[k] = live.back();
			live.pop_back();
			if (!table.in[x])
				return; // evicted since: the LRU has it
			table.in[x] = 0;
			timed([&] {
				lru_push_free(&lru, x);
				return 0;
			});
		} else {
			refs.get()[live[rng() % live.size()]] = 1;
		}
	}
	void run(std::mt19937 &rng, int steps)
	{
		for (int i = 0; i < steps && !::testing::Test::HasFatalFailure(); i++)
			step(rng);
		EXPECT_EQ(table.bad_index, 0u);
	}
};

struct flavour {
	uint32_t n, nr_cpus;
	bool percpu;
};
const flavour FLAVOURS[] = {{256, 4, false}, {256, 4, true}, {64, 1, false}};

} // namespace

// Fill an LRU on one CPU: every element handed out once, in the table.
void fill(lru_fixture &fx)
{
	for (uint32_t i = 0; i < fx.n; i++) {
		uint32_t x = lru_pop_free(&fx.lru);
		ASSERT_LT(x, fx.n);
		ASSERT_FALSE(fx.table.in[x]) << x << " handed out twice";
		fx.table.in[x] = 1;
	}
}

// The harness itself: intact lists hand out every node once, then evict; and keep doing
// so on several CPUs.
TEST(LruList, IntactListsHandOutEveryNodeThenEvict)
{
	for (bool percpu : {false, true}) {
		lru_fixture fx(64, 1, percpu);
		fill(fx);
		uint32_t x = lru_pop_free(&fx.lru);
		ASSERT_LT(x, 64u);
		EXPECT_EQ(fx.table.in[x], 0) << "handed out without evicting";
	}
	for (const flavour &f : FLAVOURS) {
		lru_fixture fx(f.n, f.nr_cpus, f.percpu);
		std::mt19937 rng(1);
		fx.run(rng, 2000);
		EXPECT_EQ(fx.nil, 0u);
	}
}

// Each kind of bad word, written where the lists keep it, then a few thousand operations:
// no fault, no index past the end, no long call. Then every lock word is overwritten with
// a number no thread has, so each list set is rebuilt from the node types (the repair a
// dead holder calls for), and the lists work again.
TEST(LruList, CorruptListsStayBounded)
{
	struct corruption {
		const char *what;
		std::function<void(lru_fixture &, std::mt19937 &)> apply;
	};
	auto each_head = [](lru_fixture &fx, auto &&f) {
		for (uint32_t h = fx.n; h < fx.lru.n_nodes; h++)
			f(fx.lru.nodes[h], h);
	};
	const corruption CASES[] = {
		{"heads past the end",
		 [&](lru_fixture &fx, std::mt19937 &) {
			 each_head(fx,
				   [](lru_node &x, uint32_t) { x.next = x.prev = 0xffffffffu; });
		 }},
		{"heads just past the end",
		 [&](lru_fixture &fx, std::mt19937 &) {
			 each_head(fx, [&](lru_node &x, uint32_t) {
				 x.next = x.prev = fx.lru.n_nodes;
			 });
		 }},
		{"heads at other heads",
		 [&](lru_fixture &fx, std::mt19937 &) {
			 each_head(fx, [&](lru_node &x, uint32_t h) {
				 x.next = h + 1 < fx.lru.n_nodes ? h + 1 : fx.n;
				 x.prev = h > fx.n ? h - 1 : fx.lru.n_nodes - 1;
			 });
		 }},
		{"heads empty (every node lost)",
		 [&](lru_fixture &fx, std::mt19937 &) {
			 each_head(fx, [](lru_node &x, uint32_t h) { x.next = x.prev = h; });
		 }},
		{"node links past the end",
		 [&](lru_fixture &fx, std::mt19937 &rng) {
			 for (uint32_t i = 0; i < fx.n; i++) {
				 fx.lru.nodes[i].next =
					 fx.lru.n_nodes + static_cast<uint32_t>(rng() % 1000);
				 fx.lru.nodes[i].prev = 0x80000000u | static_cast<uint32_t>(rng());
			 }
		 }},
		{"nodes linked to themselves",
		 [&](lru_fixture &fx, std::mt19937 &) {
			 for (uint32_t i = 0; i < fx.n; i++)
				 fx.lru.nodes[i].next = fx.lru.nodes[i].prev = i;
		 }},
		{"a cycle that misses every head",
		 [&](lru_fixture &fx, std::mt19937 &) {
			 for (uint32_t i = 0; i < fx.n; i++) {
				 fx.lru.nodes[i].next = (i + 1) % fx.n;
				 fx.lru.nodes[i].prev = (i + fx.n - 1) % fx.n;
			 }
			 each_head(fx, [](lru_node &x, uint32_t) { x.next = x.prev = 0; });
		 }},
		{"random links",
		 [&](lru_fixture &fx, std::mt19937 &rng) {
			 for (uint32_t i = 0; i < fx.lru.n_nodes; i++) {
				 fx.lru.nodes[i].next =
					 static_cast<uint32_t>(rng() % (fx.lru.n_nodes + 8));
				 fx.lru.nodes[i].prev =
					 static_cast<uint32_t>(rng() % (fx.lru.n_nodes + 8));
			 }
		 }},
		{"rotation cursors, counts and steal cursors",
		 [&](lru_fixture &fx, std::mt19937 &) {
			 uint32_t sets = fx.percpu ? fx.nr_cpus : 1;
			 for (uint32_t s = 0; s < sets; s++) {
				 fx.lru.lists[s].next_inactive_rotation = 0xfffffff0u + s;
				 fx.lru.lists[s].count[0] = 0xffffffffu;
				 fx.lru.lists[s].count[1] = 0;
			 }
			 for (uint32_t c = 0; !fx.percpu && c < fx.nr_cpus; c++)
				 fx.lru.locals[c].next_steal.store(0xffffffffu - c);
		 }},
		{"node types, CPUs and flags",
		 [&](lru_fixture &fx, std::mt19937 &rng) {
			 for (uint32_t i = 0; i < fx.lru.n_nodes; i++) {
				 fx.lru.nodes[i].type.store(static_cast<uint8_t>(rng()));
				 fx.lru.nodes[i].pending_free.store(static_cast<uint8_t>(rng()));
				 fx.lru.nodes[i].cpu = static_cast<uint16_t>(rng());
			 }
		 }},
	};
	for (const flavour &f : FLAVOURS) {
		for (const corruption &c : CASES) {
			SCOPED_TRACE(std::string(c.what) + (f.percpu ? ", per-CPU" : ", common") +
				     ", cpus " + std::to_string(f.nr_cpus));
			lru_fixture fx(f.n, f.nr_cpus, f.percpu);
			std::mt19937 rng(7);
			fx.run(rng, 500);
			c.apply(fx, rng);
			fx.run(rng, 3000);
			uint32_t sets = f.percpu ? f.nr_cpus : 1;
			for (uint32_t s = 0; s < sets; s++)
				fx.lru.lists[s].lock.word.store(0xffffffffu);
			for (uint32_t cpu = 0; !f.percpu && cpu < f.nr_cpus; cpu++)
				fx.lru.locals[cpu].lock.word.store(0xffffffffu);
			fx.run(rng, 3000);
			if (HasFatalFailure())
				return;
		}
	}
}

// Lists that hold no node at all, with every element in the table: no node can be had,
// and the pop says so (an update fails with ENOMEM) instead of walking on. An element the
// table gives back afterwards is handed out again.
TEST(LruList, ListsWithNoNodeGiveNone)
{
	for (bool percpu : {false, true}) {
		lru_fixture fx(64, 1, percpu);
		fill(fx);
		for (uint32_t h = fx.n; h < fx.lru.n_nodes; h++)
			fx.lru.nodes[h].next = fx.lru.nodes[h].prev = h;
		EXPECT_EQ(lru_pop_free(&fx.lru), LRU_NIL);
		fx.table.in[5] = 0;
		lru_push_free(&fx.lru, 5);
		EXPECT_EQ(lru_pop_free(&fx.lru), 5u);
		EXPECT_EQ(lru_pop_free(&fx.lru), LRU_NIL);
		// Indices the table cannot have are ignored.
		lru_push_free(&fx.lru, fx.n);
		lru_push_free(&fx.lru, 0xffffffffu);
		EXPECT_EQ(lru_pop_free(&fx.lru), LRU_NIL);
	}
}

// The copies of the layout in the region (the header, each list set's heads) are never
// read back: overwriting them changes nothing. One CPU, so both runs take the same path.
TEST(LruList, LayoutCopiesInTheRegionAreIgnored)
{
	lru_fixture a(64, 1, false), b(64, 1, false);
	auto *sh = reinterpret_cast<lru_shared *>(b.region.get());
	sh->n_elems = sh->n_nodes = sh->nr_cpus = 0xffffffffu;
	sh->nr_scans = sh->target_free = 0;
	sh->lists_off = sh->locals_off = sh->nodes_off = ~0ull;
	for (uint32_t t = 0; t < 3; t++)
		b.lru.lists[0].head[t] = 0xffffffffu;
	b.lru.locals[0].free_head = b.lru.locals[0].pending_head = 0xffffffffu;
	std::mt19937 ra(3), rb(3);
	for (int i = 0; i < 3000; i++) {
		a.step(ra);
		b.step(rb);
		ASSERT_EQ(a.live, b.live) << "step " << i;
	}
}

// Random words (zeros, all-ones, small numbers, random) scribbled anywhere in the region,
// lock words and the header included, between operations.
TEST(LruList, RandomScribblesStayBounded)
{
	for (const flavour &f : FLAVOURS) {
		lru_fixture fx(f.n, f.nr_cpus, f.percpu);
		std::mt19937 rng(11);
		auto *words = reinterpret_cast<uint32_t *>(fx.region.get());
		size_t n_words = fx.size / 4;
		for (int round = 0; round < 200 * bpfmap::test::SCALE && !HasFatalFailure();
		     round++) {
			for (int k = 0; k < 16; k++) {
				uint32_t v;
				switch (rng() % 4) {
				case 0:
					v = 0;
					break;
				case 1:
					v = 0xffffffffu;
					break;
				case 2:
					v = static_cast<uint32_t>(rng() % (fx.lru.n_nodes + 16));
					break;
				default:
					v = static_cast<uint32_t>(rng());
					break;
				}
				words[rng() % n_words] = v;
			}
			fx.run(rng, 50);
		}
	}
}
