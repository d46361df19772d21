// LPM_TRIE against a model: random inserts, replacements and deletes of prefixes that nest
// and overlap (short ones included, down to /0), and after every step lookups of random
// keys, through both the copy-out and the pointer lookup, compared with the longest stored
// prefix the model finds by brute force. Run for key lengths where the jump table covers
// the whole key (1 and 2 bytes) and where it covers part of it (IPv4, IPv6), and map sizes
// that give it different widths. The order of get_next_key is compared with the kernel's
// in kernel_diff_test. Then the trie as untrusted shared memory: bad words written into
// its nodes, jump table and control block, after which every command must still return.
#include <gtest/gtest.h>

#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "region_poke.h"
#include "test_util.h"

using namespace bpfmap::test;

namespace {

struct prefix {
	uint32_t len;
	std::vector<uint8_t> data; // bits past len are zero

	bool operator<(const prefix &o) const // data are all one size
	{
		return len != o.len ? len < o.len
				    : memcmp(data.data(), o.data.data(), data.size()) < 0;
	}
};

std::vector<uint8_t> masked(std::vector<uint8_t> d, uint32_t len)
{
	for (uint32_t i = len; i < d.size() * 8; i++)
		d[i / 8] &= static_cast<uint8_t>(~(0x80u >> (i % 8)));
	return d;
}

std::vector<uint8_t> key_bytes(uint32_t len, const std::vector<uint8_t> &data)
{
	std::vector<uint8_t> k(4 + data.size());
	memcpy(k.data(), &len, 4);
	memcpy(k.data() + 4, data.data(), data.size());
	return k;
}

// The longest stored prefix that covers the first len bits of data.
const uint64_t *model_lookup(const std::map<prefix, uint64_t> &m, uint32_t len,
			     const std::vector<uint8_t> &data)
{
	for (int l = static_cast<int>(len); l >= 0; l--) {
		auto it =
			m.find({static_cast<uint32_t>(l), masked(data, static_cast<uint32_t>(l))});
		if (it != m.end())
			return &it->second;
	}
	return nullptr;
}

struct trie_case {
	uint32_t data_size, max_entries;
	int steps;
};

void run_case(const trie_case &c, uint32_t seed)
{
	SCOPED_TRACE("data_size " + std::to_string(c.data_size) + " max_entries " +
		     std::to_string(c.max_entries) + " seed " + std::to_string(seed));
	const uint32_t bits = c.data_size * 8;
	int fd = map_create(11 /* LPM_TRIE */, 4 + c.data_size, 8, c.max_entries,
			    1 /* NO_PREALLOC */);
	ASSERT_GE(fd, 0);
	bpfmap_map *h = bpfmap_map_get(fd);
	std::mt19937 rng(seed);
	// Keys cluster around a few bases, so prefixes nest and part at every depth.
	std::vector<std::vector<uint8_t>> bases(16, std::vector<uint8_t>(c.data_size));
	for (auto &b : bases)
		for (auto &x : b)
			x = static_cast<uint8_t>(rng());
	auto random_data = [&] {
		std::vector<uint8_t> d = bases[rng() % bases.size()];
		uint32_t from = rng() % (bits + 1); // keep the base's first `from` bits
		for (uint32_t i = from; i < bits; i++)
			if (rng() % 2)
				d[i / 8] ^= static_cast<uint8_t>(0x80u >> (i % 8));
		return d;
	};
	auto random_len = [&] {
		switch (rng() % 4) {
		case 0:
			return static_cast<uint32_t>(rng() % (bits + 1));
		case 1:
			return static_cast<uint32_t>(rng() % std::min(bits + 1, 17u));
		default:
			return bits - static_cast<uint32_t>(rng() % std::min(bits + 1, 9u));
		}
	};
	std::map<prefix, uint64_t> model;
	int mismatches = 0;
	for (int step = 0; step < c.steps && mismatches < 5; step++) {
		uint32_t len = random_len();
		std::vector<uint8_t> data = random_data();
		std::vector<uint8_t> k = key_bytes(len, data);
		prefix p{len, masked(data, len)};
		if (rng() % 3) {
			uint64_t v = rng();
			long want = model.count(p) || model.size() < c.max_entries ? 0 : -ENOSPC;
			long got = update(fd, k.data(), &v);
			EXPECT_EQ(got, want) << "update /" << len << " at step " << step;
			if (got == 0)
				model[p] = v;
			mismatches += got != want;
		} else {
			long want = model.erase(p) ? 0 : -ENOENT;
			long got = del(fd, k.data());
			EXPECT_EQ(got, want) << "delete /" << len << " at step " << step;
			mismatches += got != want;
		}
		for (int probe = 0; probe < 8; probe++) {
			uint32_t plen = probe < 6 ? bits : random_len();
			std::vector<uint8_t> pd = random_data();
			std::vector<uint8_t> pk = key_bytes(plen, pd);
			const uint64_t *want = model_lookup(model, plen, pd);
			uint64_t v = 0;
			long r = lookup(fd, pk.data(), &v);
			auto *ptr =
				static_cast<const uint64_t *>(bpfmap_map_lookup_elem(h, pk.data()));
			bool ok = want ? r == 0 && v == *want && ptr && *ptr == *want
				       : r == -ENOENT && !ptr;
			EXPECT_TRUE(ok) << "lookup /" << plen << " at step " << step << ": r " << r
					<< " expected " << (want ? "a match" : "none");
			mismatches += !ok;
		}
	}
	// Every stored prefix finds itself, and the walk visits each once.
	for (auto &[p, v] : model) {
		std::vector<uint8_t> k = key_bytes(p.len, p.data);
		uint64_t got = 0;
		EXPECT_EQ(lookup(fd, k.data(), &got), 0);
		EXPECT_EQ(got, v);
	}
	std::vector<uint8_t> cur(4 + c.data_size), next(4 + c.data_size);
	size_t walked = 0;
	for (const void *prev = nullptr; next_key(fd, prev, next.data()) == 0; prev = cur.data()) {
		cur = next;
		ASSERT_LE(++walked, model.size());
	}
	EXPECT_EQ(walked, model.size());
	bpfmap_map_put(h);
	close(fd);
}

} // namespace

TEST(LpmTrie, MatchesTheModelUnderRandomChurn)
{
	const trie_case cases[] = {
		{1, 64, 3000},	  // 8-bit keys: the table covers them whole
		{2, 100, 3000},	  // 16-bit keys, table narrower than the key
		{2, 40000, 6000}, // 16-bit keys, table as wide as the key
		{4, 300, 4000},	  // IPv4, small table
		{4, 50000, 6000}, // IPv4, widest table
		{16, 2000, 3000}, // IPv6
	};
	for (const trie_case &c : cases)
		for (uint32_t seed : {1u, 2u})
			run_case(c, seed);
}

// Filling the map with one default route and many longer prefixes under it, then
// deleting the default route: every key's answer moves, all at once.
TEST(LpmTrie, ShortPrefixChangesReachEveryKey)
{
	int fd = map_create(11, 8, 8, 4096, 1);
	ASSERT_GE(fd, 0);
	auto key = [](uint32_t addr, uint32_t len) { // addr in host order
		std::vector<uint8_t> d(4);
		for (int i = 0; i < 4; i++)
			d[static_cast<size_t>(i)] = static_cast<uint8_t>(addr >> (24 - 8 * i));
		return key_bytes(len, d);
	};
	uint64_t v = 1;
	ASSERT_EQ(update(fd, key(0, 0).data(), &v), 0);
	for (uint32_t i = 0; i < 1000; i++) {
		v = 100 + i;
		ASSERT_EQ(update(fd, key(i << 20, 12).data(), &v), 0);
	}
	for (uint32_t i = 0; i < 4096; i++) {
		uint32_t addr = i << 20 | 0x1234;
		uint64_t got = 0;
		ASSERT_EQ(lookup(fd, key(addr, 32).data(), &got), 0);
		EXPECT_EQ(got, i < 1000 ? 100 + i : 1u) << "address " << addr;
	}
	ASSERT_EQ(del(fd, key(0, 0).data()), 0);
	for (uint32_t i = 0; i < 4096; i++) {
		uint32_t addr = i << 20 | 0x1234;
		uint64_t got = 0;
		EXPECT_EQ(lookup(fd, key(addr, 32).data(), &got), i < 1000 ? 0 : -ENOENT) << addr;
	}
	close(fd);
}

// ---- a corrupt trie ----------------------------------------------------------------------

namespace {

// An IPv4 trie of 16 prefixes with 8-byte values, as lpm_trie.cc lays it out: a jump table
// of 2^8 entries of 8 bytes, then 100 nodes of 32 bytes, each [child 0][child 1][u16
// prefixlen][u8 flags][pad][next_free][4 data bytes, to 8][value]. The control block holds
// the lock (64 bytes), then root, reuse_seq, table_seq, n_entries, n_nodes, bump,
// free_head and free_tail. The fixture checks this against the map it made.
constexpr off_t LPM_TABLE_ENTRIES = 256, LPM_POOL = 2048, LPM_NODE = 32;
constexpr off_t LPM_CHILD0 = 0, LPM_CHILD1 = 4, LPM_PREFIXLEN = 8, LPM_DATA = 16;
constexpr off_t LPM_LOCK = 0, LPM_ROOT = 64, LPM_REUSE_SEQ = 68, LPM_TABLE_SEQ = 72,
		LPM_N_ENTRIES = 76, LPM_N_NODES = 80, LPM_BUMP = 84, LPM_FREE_HEAD = 88,
		LPM_FREE_TAIL = 92;
constexpr uint32_t LPM_NODES = 100;
constexpr uint32_t FUTEX_OWNER_DIED_BIT = 0x40000000;

std::vector<uint8_t> v4(uint32_t addr, uint32_t len)
{
	return key_bytes(len, {static_cast<uint8_t>(addr >> 24), static_cast<uint8_t>(addr >> 16),
			       static_cast<uint8_t>(addr >> 8), static_cast<uint8_t>(addr)});
}

constexpr uint32_t ip(uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
	return a << 24 | b << 16 | c << 8 | d;
}

class LpmCorrupt : public ::testing::Test {
protected:
	void SetUp() override
	{
		fd = map_create(11, 8, 8, 16, 1);
		ASSERT_GE(fd, 0);
		// Node 0 is 10/8; 10.1/16 (node 1) and 10.2/16 (node 2) part under an
		// intermediate /14 (node 3), node 0's child 0; 192.168.1/24 (node 4) parts
		// from 10/8 at the root, an intermediate /0 (node 5).
		uint64_t v = 8;
		ASSERT_EQ(update(fd, v4(ip(10, 0, 0, 0), 8).data(), &v), 0);
		v = 16;
		ASSERT_EQ(update(fd, v4(ip(10, 1, 0, 0), 16).data(), &v), 0);
		v = 17;
		ASSERT_EQ(update(fd, v4(ip(10, 2, 0, 0), 16).data(), &v), 0);
		v = 24;
		ASSERT_EQ(update(fd, v4(ip(192, 168, 1, 0), 24).data(), &v), 0);
		ASSERT_EQ(peek<uint32_t>(fd, ctl(LPM_N_NODES)), LPM_NODES);
		ASSERT_EQ(peek<uint32_t>(fd, ctl(LPM_ROOT)), 5u);
		ASSERT_EQ(peek<uint32_t>(fd, ctl(LPM_BUMP)), 6u);
		ASSERT_EQ(peek<uint32_t>(fd, node(5, LPM_CHILD0)), 0u);
		ASSERT_EQ(peek<uint32_t>(fd, node(5, LPM_CHILD1)), 4u);
		ASSERT_EQ(peek<uint16_t>(fd, node(3, LPM_PREFIXLEN)), 14);
		ASSERT_EQ(peek<uint32_t>(fd, node(0, LPM_CHILD0)), 3u);
	}
	void TearDown() override { close(fd); }

	off_t ctl(off_t field) const { return ctl_offset(fd, field); }
	static off_t node(uint32_t i, off_t field) { return LPM_POOL + i * LPM_NODE + field; }

	int fd = -1;
};

// Every command, each allowed what a corrupt trie may answer (a wrong answer or an
// errno), but each must return. The number of results outside that.
int every_command(int fd)
{
	int failed = 0;
	bpfmap_map *h = bpfmap_map_get(fd);
	const std::vector<uint8_t> probes[] = {
		v4(0, 0),
		v4(ip(10, 0, 0, 0), 4),
		v4(ip(10, 1, 2, 3), 32),
		v4(ip(10, 2, 0, 0), 16),
		v4(ip(192, 168, 1, 7), 32),
		v4(ip(172, 16, 0, 1), 32),
	};
	for (const auto &k : probes) {
		uint64_t v;
		failed += expect_one_of(lookup(fd, k.data(), &v), {0, -ENOENT}, "lookup");
		(void)bpfmap_map_lookup_elem(h, k.data());
		std::vector<uint8_t> next(8);
		failed += expect_one_of(next_key(fd, k.data(), next.data()), {0, -ENOENT, -EFAULT},
					"get_next_key");
	}
	std::vector<uint8_t> cur(8), next(8);
	const void *prev = nullptr;
	for (int i = 0; i < 300; i++, prev = cur.data()) { // a corrupt trie may go round
		long r = next_key(fd, prev, next.data());
		failed += expect_one_of(r, {0, -ENOENT, -EFAULT}, "get_next_key walk");
		if (r)
			break;
		cur = next;
	}
	failed += expect_one_of(lookup_batch(fd, 8, 8, 64), {0, -ENOENT, -EFAULT}, "lookup batch");
	uint64_t v = 99;
	failed += expect_one_of(update(fd, v4(ip(10, 1, 5, 0), 24).data(), &v),
				{0, -EFAULT, -ENOMEM, -ENOSPC}, "update of a new prefix");
	failed += expect_one_of(update(fd, v4(ip(10, 2, 0, 0), 16).data(), &v),
				{0, -EFAULT, -ENOMEM, -ENOSPC}, "update of a stored prefix");
	failed += expect_one_of(update(fd, v4(0, 0).data(), &v), {0, -EFAULT, -ENOMEM, -ENOSPC},
				"update of /0");
	failed += expect_one_of(del(fd, v4(ip(10, 1, 0, 0), 16).data()), {0, -ENOENT, -EFAULT},
				"delete");
	failed += expect_one_of(del(fd, v4(ip(10, 9, 0, 0), 16).data()), {-ENOENT, -EFAULT},
				"delete of a missing prefix");
	bpfmap_map_put(h);
	return failed;
}

} // namespace

// A root out of range: lookups that start at the root (keys shorter than the jump table's
// 8 bits) used to walk again for ever (read_stable); now they find nothing, and writers and
// get_next_key say EFAULT.
TEST_F(LpmCorrupt, RootOutOfRange)
{
	poke<uint32_t>(fd, ctl(LPM_ROOT), LPM_NODES);
	EXPECT_TRUE(in_child([&] {
		int failed = 0;
		uint64_t v;
		std::vector<uint8_t> next(8);
		failed += expect_one_of(lookup(fd, v4(ip(10, 0, 0, 0), 4).data(), &v), {-ENOENT},
					"lookup of a /4");
		failed += expect_one_of(next_key(fd, nullptr, next.data()), {-EFAULT}, "first key");
		v = 1;
		failed += expect_one_of(update(fd, v4(ip(10, 7, 0, 0), 16).data(), &v), {-EFAULT},
					"update");
		failed +=
			expect_one_of(del(fd, v4(ip(10, 1, 0, 0), 16).data()), {-EFAULT}, "delete");
		return failed + every_command(fd);
	}));
	poke<uint32_t>(fd, ctl(LPM_ROOT), 0xfffffff0u);
	EXPECT_TRUE(in_child([&] { return every_command(fd); }));
}

// A child link back to its own node: every walk through it would go round for ever.
TEST_F(LpmCorrupt, ChildLinkToItself)
{
	poke<uint32_t>(fd, node(0, LPM_CHILD0), 0);
	EXPECT_TRUE(in_child([&] {
		int failed = 0;
		uint64_t v;
		failed += expect_one_of(lookup(fd, v4(ip(10, 1, 2, 3), 32).data(), &v),
					{0, -ENOENT}, "lookup through the loop");
		v = 1;
		failed += expect_one_of(update(fd, v4(ip(10, 1, 7, 0), 24).data(), &v), {-EFAULT},
					"update through the loop");
		failed += expect_one_of(del(fd, v4(ip(10, 2, 0, 0), 16).data()), {-EFAULT},
					"delete through the loop");
		return failed + every_command(fd);
	}));
	poke<uint32_t>(fd, node(3, LPM_CHILD1), 5); // a longer loop: 5 -> 0 -> 3 -> 5
	poke<uint32_t>(fd, node(0, LPM_CHILD0), 3);
	EXPECT_TRUE(in_child([&] { return every_command(fd); }));
}

// Every jump table entry out of range: lookups of whole addresses find nothing, until a
// change at the root rewrites the whole table and they are right again.
TEST_F(LpmCorrupt, JumpTableOutOfRange)
{
	for (off_t i = 0; i < LPM_TABLE_ENTRIES; i++)
		poke<uint64_t>(fd, i * 8, 0xfffffff0fffffff0ull);
	EXPECT_TRUE(in_child([&] {
		uint64_t v;
		return expect_one_of(lookup(fd, v4(ip(10, 1, 2, 3), 32).data(), &v), {-ENOENT},
				     "lookup");
	}));
	uint64_t v = 1;
	ASSERT_EQ(update(fd, v4(0, 0).data(), &v), 0);
	v = 0;
	EXPECT_EQ(lookup(fd, v4(ip(10, 1, 2, 3), 32).data(), &v), 0);
	EXPECT_EQ(v, 16u);
	EXPECT_EQ(lookup(fd, v4(ip(11, 1, 2, 3), 32).data(), &v), 0);
	EXPECT_EQ(v, 1u);
	EXPECT_TRUE(in_child([&] { return every_command(fd); }));
}

// A loop among nodes shorter than the jump table's 8 bits: the table rewrite that follows
// every change near the root would go round for ever. It stops, leaves the table unused
// (odd table_seq), and the next rewrite of a sound trie makes it whole again.
TEST_F(LpmCorrupt, LoopAboveTheJumpTableDepth)
{
	// 0/0 takes the intermediate root's place as node 6; 128/1 (node 7) goes between
	// it and 192.168.1/24.
	uint64_t v = 1;
	ASSERT_EQ(update(fd, v4(0, 0).data(), &v), 0);
	ASSERT_EQ(update(fd, v4(ip(128, 0, 0, 0), 1).data(), &v), 0);
	ASSERT_EQ(peek<uint32_t>(fd, ctl(LPM_ROOT)), 6u);
	ASSERT_EQ(peek<uint32_t>(fd, node(6, LPM_CHILD1)), 7u);
	ASSERT_EQ(peek<uint32_t>(fd, node(7, LPM_CHILD1)), 4u);
	poke<uint32_t>(fd, node(7, LPM_CHILD1), 6);
	EXPECT_TRUE(in_child([&] {
		int failed = 0;
		// Deleting the root's prefix rewrites the whole table. (Replacing it would not:
		// a replace rewrites the value in place.)
		failed += expect_one_of(del(fd, v4(0, 0).data()), {0}, "delete of /0");
		failed += expect_one_of(peek<uint32_t>(fd, ctl(LPM_TABLE_SEQ)) & 1, {1},
					"table_seq left odd");
		uint64_t got = 0;
		failed += expect_one_of(lookup(fd, v4(ip(10, 2, 9, 9), 32).data(), &got), {0},
					"lookup from the root");
		failed += expect_one_of(static_cast<long>(got), {17}, "its value");
		return failed + every_command(fd);
	}));
	poke<uint32_t>(fd, node(7, LPM_CHILD1), 4);
	v = 3;
	ASSERT_EQ(update(fd, v4(ip(64, 0, 0, 0), 2).data(), &v), 0);
	EXPECT_EQ(peek<uint32_t>(fd, ctl(LPM_TABLE_SEQ)) & 1, 0u);
	v = 0;
	EXPECT_EQ(lookup(fd, v4(ip(10, 2, 9, 9), 32).data(), &v), 0);
	EXPECT_EQ(v, 99u); // every_command's update, on a path clear of the loop
	EXPECT_EQ(lookup(fd, v4(ip(100, 0, 0, 1), 32).data(), &v), 0);
	EXPECT_EQ(v, 3u);
	EXPECT_EQ(lookup(fd, v4(ip(192, 168, 1, 1), 32).data(), &v), 0);
	EXPECT_EQ(v, 24u);
}

// The bump mark and both ends of the free list out of range: no node can be had (ENOMEM)
// until a delete starts a new free list.
TEST_F(LpmCorrupt, FreeListOutOfRange)
{
	poke<uint32_t>(fd, ctl(LPM_BUMP), 0xffffffffu);
	poke<uint32_t>(fd, ctl(LPM_FREE_HEAD), 5000);
	poke<uint32_t>(fd, ctl(LPM_FREE_TAIL), 5000);
	uint64_t v = 5;
	EXPECT_EQ(update(fd, v4(ip(10, 5, 0, 0), 16).data(), &v), -ENOMEM);
	EXPECT_EQ(del(fd, v4(ip(192, 168, 1, 0), 24).data()), 0);
	EXPECT_EQ(update(fd, v4(ip(10, 5, 0, 0), 16).data(), &v), 0);
	v = 0;
	EXPECT_EQ(lookup(fd, v4(ip(10, 5, 1, 1), 32).data(), &v), 0);
	EXPECT_EQ(v, 5u);
	EXPECT_TRUE(in_child([&] { return every_command(fd); }));
}

// An entry count past max_entries: no room (ENOSPC), and deletes do not wrap it round.
TEST_F(LpmCorrupt, EntryCountOutOfRange)
{
	poke<uint32_t>(fd, ctl(LPM_N_ENTRIES), 0xfffffff0u);
	uint64_t v = 5;
	EXPECT_EQ(update(fd, v4(ip(10, 5, 0, 0), 16).data(), &v), -ENOSPC);
	poke<uint32_t>(fd, ctl(LPM_N_ENTRIES), 0);
	EXPECT_EQ(del(fd, v4(ip(192, 168, 1, 0), 24).data()), 0);
	EXPECT_EQ(peek<uint32_t>(fd, ctl(LPM_N_ENTRIES)), 0u);
	EXPECT_TRUE(in_child([&] { return every_command(fd); }));
}

// A prefix length past the key's bits in a stored node: get_next_key does not hand out a
// key that no command accepts (a batch walk would meet it again and again).
TEST_F(LpmCorrupt, PrefixLengthOutOfRange)
{
	poke<uint16_t>(fd, node(1, LPM_PREFIXLEN), 0xffff);
	poke<uint16_t>(fd, node(4, LPM_PREFIXLEN), 33);
	EXPECT_TRUE(in_child([&] { return every_command(fd); }));
}

// A process that keeps bumping reuse_seq, as writers reusing nodes do, so that lock-free
// passes keep failing their check: after a bounded number of them a lookup walks under the
// trie lock, and the answer stays right whichever way it came. (How often a pass fails
// depends on how the two threads are scheduled; the read that spun for ever on a corrupt
// trie is RootOutOfRange's.)
TEST_F(LpmCorrupt, ReuseSeqThatNeverSettles)
{
	EXPECT_TRUE(in_child([&] {
		size_t len = static_cast<size_t>(region_file_size(fd));
		void *m = reinterpret_cast<void *>(
			syscall(SYS_mmap, nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
		if (m == MAP_FAILED)
			return 1;
		auto *seq = reinterpret_cast<std::atomic<uint32_t> *>(
			static_cast<char *>(m) + ctl_offset(fd, LPM_REUSE_SEQ));
		std::atomic<bool> stop{false};
		// On two CPUs of their own where there are two, so that they run at once.
		auto pin = [](int cpu) {
			cpu_set_t set;
			CPU_ZERO(&set);
			CPU_SET(cpu, &set);
			sched_setaffinity(0, sizeof(set), &set);
		};
		bool two = std::thread::hardware_concurrency() >= 2;
		if (two)
			pin(0);
		std::thread bumper([&] {
			if (two)
				pin(1);
			while (!stop.load(std::memory_order_relaxed))
				seq->fetch_add(1, std::memory_order_relaxed);
		});
		uint32_t s0 = seq->load();
		while (seq->load() == s0) // the bumper runs
			std::this_thread::yield();
		int failed = 0;
		bpfmap_map *h = bpfmap_map_get(fd);
		auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
		while (std::chrono::steady_clock::now() < end && !failed) {
			uint64_t v = 0;
			failed += expect_one_of(lookup(fd, v4(ip(10, 2, 3, 4), 32).data(), &v), {0},
						"lookup");
			failed += expect_one_of(static_cast<long>(v), {17}, "its value");
			auto *p = static_cast<uint64_t *>(
				bpfmap_map_lookup_elem(h, v4(ip(192, 168, 1, 9), 32).data()));
			failed += expect_one_of(p ? static_cast<long>(*p) : -1, {24},
						"program-side lookup");
		}
		bpfmap_map_put(h);
		stop = true;
		bumper.join();
		return failed;
	}));
}

// A stored key scribbled so that its own walk no longer reaches its node (10.1/16 becomes
// 99.0/16, which nothing covers): that node was the first of the post-order walk, and its
// key, not found, sends get_next_key back to the first node: a batch lookup, whose lookups
// all found nothing, went round for ever. A node off its own path is not handed out.
TEST_F(LpmCorrupt, KeyScribbledOffItsPath)
{
	std::vector<uint8_t> first(8);
	ASSERT_EQ(next_key(fd, nullptr, first.data()), 0);
	ASSERT_EQ(first, v4(ip(10, 1, 0, 0), 16));
	poke<uint32_t>(fd, node(1, LPM_DATA), ip(0, 0, 0, 99)); // bytes 99, 0, 0, 0
	EXPECT_TRUE(in_child([&] {
		std::vector<uint8_t> next(8);
		uint64_t v;
		return expect_one_of(lookup(fd, v4(ip(99, 0, 0, 0), 16).data(), &v), {-ENOENT},
				     "lookup of the scribbled key") +
		       expect_one_of(next_key(fd, nullptr, next.data()), {-EFAULT}, "first key") +
		       expect_one_of(lookup_batch(fd, 8, 8, 16), {-EFAULT}, "lookup batch") +
		       every_command(fd);
	}));
}

// The owner of the lock died (as the kernel marks it) and left a scribbled trie: the next
// writer's repair walks it with every index checked and each node taken once.
TEST_F(LpmCorrupt, RepairAfterADeadOwnerOfACorruptTrie)
{
	poke<uint32_t>(fd, node(3, LPM_CHILD1), 5);	// a loop back to the root
	poke<uint32_t>(fd, node(3, LPM_CHILD0), 77777); // and a link out of range
	poke<uint32_t>(fd, ctl(LPM_BUMP), 0xffffffffu);
	poke<uint32_t>(fd, ctl(LPM_LOCK), FUTEX_OWNER_DIED_BIT);
	EXPECT_TRUE(in_child([&] {
		uint64_t v = 1;
		return expect_one_of(update(fd, v4(ip(172, 16, 0, 0), 12).data(), &v), {0},
				     "update after the repair") +
		       every_command(fd);
	}));
	EXPECT_LE(peek<uint32_t>(fd, ctl(LPM_BUMP)), LPM_NODES);
}

// A process that attaches checks the control block against the layout it computes for
// the header: a copy of the map's file with one bad word does not open.
TEST_F(LpmCorrupt, AttachRefusesABadControlBlock)
{
	auto with = [&](off_t field, uint32_t value) {
		return open_forged_copy(fd, "lpm_forged", [&](std::vector<char> &b, size_t c) {
			memcpy(b.data() + c + field, &value, sizeof(value));
		});
	};
	long ok = open_forged_copy(fd, "lpm_forged", [](std::vector<char> &, size_t) {});
	ASSERT_GE(ok, 0) << "an unchanged copy opens";
	close(static_cast<int>(ok));
	EXPECT_LT(with(LPM_N_NODES, LPM_NODES + 1), 0);
	EXPECT_LT(with(LPM_N_NODES, 0xffffffffu), 0);
	EXPECT_LT(with(LPM_ROOT, LPM_NODES), 0);
	EXPECT_LT(with(LPM_BUMP, LPM_NODES + 1), 0);
	EXPECT_LT(with(LPM_FREE_HEAD, 0x80000000u), 0);
	EXPECT_LT(with(LPM_FREE_TAIL, LPM_NODES), 0);
	EXPECT_LT(with(LPM_N_ENTRIES, 17), 0);
}
