// Kernel-differential tests of LPM_TRIE: creation errors, random operations, a full trie
// and batches.
#include "kernel_diff.h"

#include <cerrno>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace kernel_diff {
namespace {

// ==== LPM_TRIE =============================================================================

TEST_F(KernelDiff, LpmCreateErrors)
{
	// The value limit: 4 MiB less the largest data (256) and the kernel's node header.
	const uint32_t vmax = (1u << 22) - 256 - 24;
	const create_case cases[] = {
		{"ok ipv4", 8, 8, 16, F_NO_PREALLOC},
		{"ok ipv6", 20, 4, 16, F_NO_PREALLOC},
		{"no NO_PREALLOC", 8, 8, 16, 0},
		{"key_size 4", 4, 8, 16, F_NO_PREALLOC},
		{"key_size 5", 5, 8, 16, F_NO_PREALLOC},
		{"key_size 260", 260, 8, 16, F_NO_PREALLOC},
		{"key_size 261", 261, 8, 16, F_NO_PREALLOC},
		{"value_size 0", 8, 0, 16, F_NO_PREALLOC},
		{"value_size max", 8, vmax, 1, F_NO_PREALLOC},
		{"value_size max + 1", 8, vmax + 1, 1, F_NO_PREALLOC},
		{"value_size max - 16", 8, vmax - 16, 1, F_NO_PREALLOC},
		{"value_size max + 16", 8, vmax + 16, 1, F_NO_PREALLOC},
		{"max_entries 0", 8, 8, 0, F_NO_PREALLOC},
		{"max_entries 2^32-1", 8, 8, 0xffffffffu, F_NO_PREALLOC},
		{"ZERO_SEED", 8, 8, 16, F_NO_PREALLOC | F_ZERO_SEED},
		{"MMAPABLE", 8, 8, 16, F_NO_PREALLOC | F_MMAPABLE},
		{"NO_COMMON_LRU", 8, 8, 16, F_NO_PREALLOC | F_NO_COMMON_LRU},
		{"RDONLY_PROG", 8, 8, 16, F_NO_PREALLOC | F_RDONLY_PROG},
		{"WRONLY", 8, 8, 16, F_NO_PREALLOC | F_WRONLY},
		{"NUMA_NODE", 8, 8, 16, F_NO_PREALLOC | F_NUMA_NODE},
	};
	for (const create_case &c : cases)
		check(std::string("LPM create ") + c.name, create_req(T_LPM, c));
}

struct LpmCfg {
	uint32_t data_size, value_size, max;
};

// Random prefixes that share structure: a few base addresses, low bits perturbed, any
// prefix length (sometimes past the maximum).
struct LpmKeys {
	std::mt19937_64 rng;
	uint32_t ds;
	std::vector<std::vector<uint8_t>> bases;
	std::vector<std::vector<uint8_t>> used;

	LpmKeys(uint64_t seed, uint32_t data_size)
		: rng(seed)
		, ds(data_size)
	{
		for (int i = 0; i < 4; i++) {
			std::vector<uint8_t> b(ds);
			for (auto &x : b)
				x = static_cast<uint8_t>(rng());
			bases.push_back(b);
		}
	}
	std::vector<uint8_t> make()
	{
		if (!used.empty() && rng() % 4 == 0)
			return used[rng() % used.size()]; // an exact key seen before
		std::vector<uint8_t> k(4 + ds);
		std::vector<uint8_t> d = bases[rng() % bases.size()];
		uint32_t flip = static_cast<uint32_t>(rng() % (ds * 8 + 1));
		for (uint32_t b = flip; b < ds * 8; b++)
			if (rng() % 2)
				d[b / 8] ^= static_cast<uint8_t>(0x80 >> (b % 8));
		uint32_t plen = rng() % 16 == 0 ? ds * 8 + 1 + static_cast<uint32_t>(rng() % 3)
						: static_cast<uint32_t>(rng() % (ds * 8 + 1));
		memcpy(k.data(), &plen, 4);
		memcpy(k.data() + 4, d.data(), ds);
		used.push_back(k);
		return k;
	}
};

// The whole get_next_key walk, from NULL to ENOENT, compared at every step.
void lpm_walk_compare(const std::string &t, const Pair &p)
{
	EA a;
	a.keyp = Ptr::NUL;
	Both b = elem(t + "walk first", p, C_GET_NEXT_KEY, a);
	int ob = out_buf(elem_req(p, C_GET_NEXT_KEY, a));
	std::vector<uint8_t> cur;
	for (uint32_t i = 0; b.k.ret == 0 && i <= p.max; i++) {
		cur.assign(b.k.bufs[ob].begin(), b.k.bufs[ob].begin() + p.ks);
		EA n;
		n.key = &cur;
		b = elem(t + "walk step", p, C_GET_NEXT_KEY, n);
		ob = out_buf(elem_req(p, C_GET_NEXT_KEY, n));
	}
}

TEST_F(KernelDiff, LpmRandomOps)
{
	const LpmCfg cfgs[] = {{1, 4, 40},  {2, 8, 100}, {3, 3, 64},
			       {4, 8, 300}, {13, 5, 80}, {16, 8, 200}};
	for (const LpmCfg &c : cfgs) {
		std::string t = "LPM ds " + std::to_string(c.data_size) + " max " +
				std::to_string(c.max) + " ";
		Pair p = create_both(
			t, create_req(T_LPM, 4 + c.data_size, c.value_size, c.max, F_NO_PREALLOC));
		ASSERT_TRUE(p) << seed_str();
		LpmKeys keys(global_seed() ^ (c.data_size * 7919 + c.max), c.data_size);
		std::mt19937_64 rng(global_seed() ^ c.max);
		int mism = 0;
		for (int i = 0; i < 1500 && mism < 5; i++) {
			std::vector<uint8_t> k = keys.make();
			std::vector<uint8_t> v(c.value_size);
			for (auto &x : v)
				x = static_cast<uint8_t>(rng());
			EA a;
			a.key = &k;
			a.val = &v;
			bool same = true;
			std::string n = t + "#" + std::to_string(i) + " ";
			switch (rng() % 10) {
			case 0:
			case 1:
			case 2:
			case 3: {
				static const uint64_t fl[] = {U_ANY,   U_ANY, U_NOEXIST,
							      U_EXIST, 3,     U_LOCK};
				a.flags = fl[rng() % 6];
				elem(n + "update flags " + std::to_string(a.flags), p, C_UPDATE, a,
				     &same);
				break;
			}
			case 4:
			case 5:
				elem(n + "delete", p, C_DELETE, a, &same);
				break;
			case 6:
			case 7:
				elem(n + "lookup", p, C_LOOKUP, a, &same);
				break;
			case 8:
				elem(n + "get_next_key", p, C_GET_NEXT_KEY, a, &same);
				break;
			default:
				elem(n + "lookup_and_delete", p, C_LOOKUP_AND_DELETE, a, &same);
			}
			mism += !same;
			if (i % 250 == 249)
				lpm_walk_compare(n, p);
		}
		lpm_walk_compare(t + "end ", p);
		EA a;
		a.keyp = Ptr::NUL;
		elem(t + "get_next_key NULL", p, C_GET_NEXT_KEY, a);
		std::vector<uint8_t> k(4 + c.data_size, 0);
		a.keyp = Ptr::BUF;
		a.key = &k;
		a.valp = Ptr::NUL;
		elem(t + "lookup value NULL", p, C_LOOKUP, a);
		elem(t + "get_next_key next NULL", p, C_GET_NEXT_KEY, a);
		a.valp = Ptr::BUF;
		a.keyp = Ptr::NUL;
		elem(t + "update key NULL", p, C_UPDATE, a);
		elem(t + "lookup key NULL", p, C_LOOKUP, a);
		elem(t + "delete key NULL", p, C_DELETE, a);
	}
}

// Fill to max_entries (ENOSPC after), replace at full, delete every other key, refill.
TEST_F(KernelDiff, LpmFullAndBatch)
{
	Pair p = create_both("LPM full", create_req(T_LPM, 8, 4, 64, F_NO_PREALLOC));
	ASSERT_TRUE(p);
	std::mt19937_64 rng(global_seed() ^ 0x1b);
	std::vector<std::vector<uint8_t>> in;
	for (int i = 0; i < 80; i++) {
		std::vector<uint8_t> k(8), v(4, static_cast<uint8_t>(i));
		uint32_t plen = 8 + static_cast<uint32_t>(rng() % 25),
			 addr = static_cast<uint32_t>(rng());
		memcpy(k.data(), &plen, 4);
		memcpy(k.data() + 4, &addr, 4);
		EA a;
		a.key = &k;
		a.val = &v;
		Both b = elem("LPM fill #" + std::to_string(i), p, C_UPDATE, a);
		if (b.k.ret == 0)
			in.push_back(k);
	}
	std::vector<uint8_t> v(4, 0xee);
	for (size_t i = 0; i < in.size(); i++) {
		EA a;
		a.key = &in[i];
		a.val = &v;
		elem("LPM replace at full", p, C_UPDATE, a);
		a.flags = U_EXIST;
		elem("LPM replace at full EXIST", p, C_UPDATE, a);
		if (i % 2)
			elem("LPM delete half", p, C_DELETE, a);
	}
	lpm_walk_compare("LPM after deletes ", p);
	for (size_t i = 0; i < in.size(); i++) {
		EA a;
		a.key = &in[i];
		a.val = &v;
		a.flags = U_NOEXIST;
		elem("LPM refill", p, C_UPDATE, a);
	}
	// The batch commands the kernel has for this type (generic ones), and not the others.
	for (uint32_t count : {1u, 7u, 64u, 100u}) {
		std::vector<uint8_t> keys(count * 8 + 8, 0xcc), vals(count * 4 + 8, 0xcc);
		Req q(C_LOOKUP_BATCH);
		q.fd(36, p.k, p.u);
		q.u32(32, count);
		q.buf(16, keys);
		q.buf(24, vals);
		q.buf(8, std::vector<uint8_t>(8, 0));
		check("LPM lookup_batch count " + std::to_string(count), q);
	}
	Req q(C_LOOKUP_AND_DELETE_BATCH);
	q.fd(36, p.k, p.u);
	q.u32(32, 1);
	check("LPM lookup_and_delete_batch", q);
}

} // namespace
} // namespace kernel_diff
