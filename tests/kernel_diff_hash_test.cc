// Kernel-differential tests of hash maps: LRU eviction with pinned CPUs, a full map and the
// update flags.
#include "kernel_diff.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

namespace kernel_diff {
namespace {

// ==== LRU hash maps ======================================================================
//
// Which keys an LRU map evicts depends on the CPU each operation runs on; with the thread
// pinned, the kernel's choice is deterministic, and bpfmap must make the same one.

using cpu_util::PinCpu;

// Every key of [0, domain): present on both sides or on neither, with the same value.
void lru_compare_contents(const std::string &t, const Pair &p, uint32_t domain)
{
	int differing = 0;
	for (uint32_t k = 0; k < domain; k++) {
		std::vector<uint8_t> key = u32key(k);
		EA a;
		a.key = &key;
		bool same = true;
		elem(t + "contents: LOOKUP key " + std::to_string(k), p, C_LOOKUP, a, &same);
		differing += !same;
	}
	EXPECT_EQ(differing, 0) << t << "keys whose presence or value differ";
}

// A socket filter that looks up, in lru, the u32 key held in keymap[0]: the kernel sets
// reference bits only for lookups made by programs.
struct RefLookupProg {
	int prog = -1, keymap = -1;
	bpfmap_map *handle = nullptr;

	RefLookupProg(int lru_kfd, int lru_ufd)
	{
		handle = bpfmap_map_get(lru_ufd);
		Req km = create_req(T_ARRAY, 4, 4, 1);
		keymap = static_cast<int>(run_side(true, km).ret);
		const insn prog_insns[] = {
			{0x18, 0x11, 0, keymap},  {0, 0, 0, 0}, // r1 = keymap
			{0x62, 0x0a, -4, 0},			// *(u32 *)(r10 - 4) = 0
			{0xbf, 0xa2, 0, 0},			// r2 = r10
			{0x07, 0x02, 0, -4},			// r2 += -4
			{0x85, 0, 0, 1},			// call map_lookup_elem
			{0x15, 0x00, 7, 0},			// if r0 == 0 goto exit
			{0x61, 0x01, 0, 0},			// r1 = *(u32 *)r0
			{0x63, 0x1a, -8, 0},			// *(u32 *)(r10 - 8) = r1
			{0x18, 0x11, 0, lru_kfd}, {0, 0, 0, 0}, // r1 = lru
			{0xbf, 0xa2, 0, 0},			// r2 = r10
			{0x07, 0x02, 0, -8},			// r2 += -8
			{0x85, 0, 0, 1},			// call map_lookup_elem
			{0xb7, 0x00, 0, 0},			// r0 = 0
			{0x95, 0, 0, 0},			// exit
		};
		static const char license[] = "GPL";
		uint8_t attr[KATTR] = {};
		uint32_t type = 1, cnt = sizeof(prog_insns) / sizeof(prog_insns[0]);
		uint64_t insns = reinterpret_cast<uintptr_t>(prog_insns),
			 lic = reinterpret_cast<uintptr_t>(license);
		memcpy(attr, &type, 4);
		memcpy(attr + 4, &cnt, 4);
		memcpy(attr + 8, &insns, 8);
		memcpy(attr + 16, &lic, 8);
		prog = static_cast<int>(kernel_bpf(C_PROG_LOAD, attr, sizeof(attr)));
	}
	~RefLookupProg()
	{
		if (handle)
			bpfmap_map_put(handle);
		if (prog >= 0)
			close(prog);
		if (keymap >= 0)
			close(keymap);
	}
	bool ok() const { return prog >= 0 && keymap >= 0 && handle; }

	// The lookup a program makes, on both sides.
	void lookup(uint32_t key)
	{
		uint32_t zero = 0;
		uint8_t a[KATTR] = {};
		uint32_t fd = static_cast<uint32_t>(keymap);
		uint64_t kp = reinterpret_cast<uintptr_t>(&zero),
			 vp = reinterpret_cast<uintptr_t>(&key);
		memcpy(a, &fd, 4);
		memcpy(a + 8, &kp, 8);
		memcpy(a + 16, &vp, 8);
		EXPECT_EQ(kernel_bpf(C_UPDATE, a, sizeof(a)), 0);
		uint8_t pkt[64] = {};
		uint8_t t[KATTR] = {};
		uint32_t pfd = static_cast<uint32_t>(prog), len = sizeof(pkt);
		uint64_t data = reinterpret_cast<uintptr_t>(pkt);
		memcpy(t, &pfd, 4);
		memcpy(t + 8, &len, 4);
		memcpy(t + 16, &data, 8);
		EXPECT_EQ(kernel_bpf(C_PROG_TEST_RUN, t, sizeof(t)), 0) << errname(errno);
		bpfmap_map_lookup_elem(handle, &key);
	}
};

struct LruCfg {
	uint32_t type, flags, max;
};

std::string lru_name(const LruCfg &c)
{
	return std::string(map_type_name(c.type)) +
	       (c.flags & F_NO_COMMON_LRU ? " NO_COMMON_LRU" : "") + " max " +
	       std::to_string(c.max) + " ";
}

const LruCfg kLruCfgs[] = {
	{T_LRU_HASH, 0, 1},
	{T_LRU_HASH, 0, 2},
	{T_LRU_HASH, 0, 16},
	{T_LRU_HASH, 0, 100},
	{T_LRU_HASH, 0, 1000},
	{T_LRU_HASH, F_NO_COMMON_LRU, 2},
	{T_LRU_HASH, F_NO_COMMON_LRU, 101},
	{T_LRU_HASH, F_NO_COMMON_LRU, 1000},
	{T_LRU_PERCPU_HASH, 0, 3},
	{T_LRU_PERCPU_HASH, 0, 200},
	{T_LRU_PERCPU_HASH, F_NO_COMMON_LRU, 64},
};

std::vector<uint8_t> lru_value(const Pair &p, uint32_t seed)
{
	std::vector<uint8_t> v(value_bytes(p.type, p.vs));
	for (size_t i = 0; i < v.size(); i++)
		v[i] = static_cast<uint8_t>(seed * 31 + i);
	return v;
}

void lru_update(const std::string &t, const Pair &p, uint32_t k, uint64_t flags)
{
	std::vector<uint8_t> key = u32key(k), v = lru_value(p, k ^ static_cast<uint32_t>(flags));
	EA a;
	a.key = &key;
	a.val = &v;
	a.flags = flags;
	elem(t + "UPDATE key " + std::to_string(k) + " flags " + std::to_string(flags), p, C_UPDATE,
	     a);
}

TEST_F(KernelDiff, LruCreateAndInfo)
{
	for (uint32_t type : {T_LRU_HASH, T_LRU_PERCPU_HASH}) {
		for (uint32_t flags :
		     {0u, F_NO_PREALLOC, F_NO_COMMON_LRU, F_NO_COMMON_LRU | F_NO_PREALLOC,
		      F_NUMA_NODE, F_NUMA_NODE | F_NO_COMMON_LRU, F_ZERO_SEED, F_RDONLY_PROG,
		      F_MMAPABLE}) {
			for (uint32_t max : {1u, 3u, 101u}) {
				std::string t = std::string(map_type_name(type)) + " flags " +
						std::to_string(flags) + " max " +
						std::to_string(max) + " ";
				Both c = check(t + "create", create_req(type, 4, 8, max, flags));
				int kfd = static_cast<int>(c.k.ret),
				    ufd = static_cast<int>(c.u.ret);
				if (kfd >= 0 && ufd >= 0)
					check(t + "info", info_req(kfd, ufd, 88), id_mask());
				if (kfd >= 0)
					close(kfd);
				if (ufd >= 0)
					close(ufd);
			}
		}
	}
	// NO_COMMON_LRU on the non-LRU hash types.
	for (uint32_t type : {T_HASH, T_PERCPU_HASH})
		check(std::string(map_type_name(type)) + " NO_COMMON_LRU",
		      create_req(type, 4, 8, 8, F_NO_COMMON_LRU));
}

// Fill far past capacity in key order, with no lookups: the survivors are the kernel's.
TEST_F(KernelDiff, LruFillPastCapacity)
{
	for (int cpu : {0, static_cast<int>(possible_cpus()) - 1}) {
		PinCpu pin(cpu);
		for (const LruCfg &c : kLruCfgs) {
			std::string t = lru_name(c) + "cpu " + std::to_string(cpu) + " ";
			Pair p =
				create_both(t + "create", create_req(c.type, 4, 8, c.max, c.flags));
			ASSERT_TRUE(p);
			for (uint32_t k = 0; k < 3 * c.max + 10; k++)
				lru_update(t, p, k, U_ANY);
			lru_compare_contents(t, p, 3 * c.max + 10);
		}
	}
}

// Random updates (every flag, bad ones too), deletes, lookups and lookup-and-deletes,
// moving between CPUs now and then: every result and the final contents match.
TEST_F(KernelDiff, LruRandomOps)
{
	std::mt19937 rng(static_cast<uint32_t>(global_seed()));
	PinCpu pin(0);
	for (const LruCfg &c : kLruCfgs) {
		std::string t = lru_name(c);
		Pair p = create_both(t + "create", create_req(c.type, 4, 8, c.max, c.flags));
		ASSERT_TRUE(p);
		uint32_t domain = 2 * c.max + 4;
		int cpu = 0;
		for (int op = 0; op < static_cast<int>(std::max(600u, 6 * c.max)); op++) {
			if (rng() % 97 == 0) {
				cpu = static_cast<int>(rng() % possible_cpus());
				pin.move(cpu);
			}
			std::string o = t + "op " + std::to_string(op) + " cpu " +
					std::to_string(cpu) + " ";
			uint32_t k = rng() % domain, r = rng() % 100;
			std::vector<uint8_t> key = u32key(k);
			EA a;
			a.key = &key;
			if (r < 55) {
				static const uint64_t fl[] = {U_ANY,   U_ANY,  U_NOEXIST,
							      U_EXIST, U_LOCK, 3};
				lru_update(o, p, k, fl[rng() % 6]);
			} else if (r < 70) {
				elem(o + "LOOKUP key " + std::to_string(k), p, C_LOOKUP, a);
			} else if (r < 85) {
				elem(o + "DELETE key " + std::to_string(k), p, C_DELETE, a);
			} else {
				elem(o + "LOOKUP_AND_DELETE key " + std::to_string(k), p,
				     C_LOOKUP_AND_DELETE, a);
			}
		}
		lru_compare_contents(t + "end ", p, domain);
	}
}

// Keep looking up a hot set (as a program does, which sets reference bits) while new
// keys stream in: the hot keys survive, and the whole surviving set is the kernel's.
TEST_F(KernelDiff, LruHotSetSurvives)
{
	PinCpu pin(0);
	for (const LruCfg &c : kLruCfgs) {
		if (c.max < 16)
			continue;
		std::string t = lru_name(c) + "hot set ";
		Pair p = create_both(t + "create", create_req(c.type, 4, 8, c.max, c.flags));
		ASSERT_TRUE(p);
		RefLookupProg prog(p.k, p.u);
		if (!prog.ok())
			GTEST_SKIP() << "the kernel does not load the lookup program here";
		uint32_t hot = std::max(2u, c.max / 16);
		if (c.flags & F_NO_COMMON_LRU)
			hot = std::max(2u, hot / static_cast<uint32_t>(possible_cpus()));
		for (uint32_t k = 0; k < hot; k++)
			lru_update(t, p, k, U_ANY);
		for (uint32_t k = hot; k < 4 * c.max; k++) {
			lru_update(t, p, k, U_ANY);
			if (k % 4 == 0)
				for (uint32_t h = 0; h < hot; h++)
					prog.lookup(h);
		}
		lru_compare_contents(t, p, 4 * c.max);
		for (uint32_t h = 0; h < hot; h++) {
			std::vector<uint8_t> key = u32key(h);
			EA a;
			a.key = &key;
			Both b = elem(t + "hot key " + std::to_string(h), p, C_LOOKUP, a);
			EXPECT_EQ(b.u.ret, 0) << t << "hot key " << h << " was evicted";
		}
	}
}

// ==== deterministic element semantics ====================================================================

TEST_F(KernelDiff, HashFullAndFlags)
{
	for (uint32_t flags : {0u, F_NO_PREALLOC}) {
		for (uint32_t max : {1u, 2u, 3u}) {
			std::string t = "HASH max " + std::to_string(max) + " flags " +
					std::to_string(flags) + " ";
			Pair p = hash_pair(t, 4, 4, max, flags);
			ASSERT_TRUE(p);
			std::vector<uint8_t> v(4, 0);
			for (int round = 0; round < 3; round++) {
				for (uint32_t k = 0; k < max + 2; k++) {
					std::vector<uint8_t> key = u32key(k);
					for (uint64_t f :
					     {U_NOEXIST, U_ANY, U_EXIST, uint64_t{3}, U_LOCK,
					      uint64_t{8}, uint64_t{1} << 32, U_LOCK | U_EXIST}) {
						v[0] = static_cast<uint8_t>(k + 16 * f + round);
						EA a;
						a.key = &key;
						a.val = &v;
						a.flags = f;
						elem(t + "UPDATE key " + std::to_string(k) +
							     " flags " + std::to_string(f),
						     p, C_UPDATE, a);
						elem(t + "LOOKUP key " + std::to_string(k), p,
						     C_LOOKUP, a);
					}
				}
				for (uint32_t k = 0; k < max + 2; k += 2) {
					std::vector<uint8_t> key = u32key(k);
					EA a;
					a.key = &key;
					elem(t + "DELETE key " + std::to_string(k), p, C_DELETE, a);
					elem(t + "LOOKUP_AND_DELETE key " + std::to_string(k + 1),
					     p, C_LOOKUP_AND_DELETE, a);
				}
			}
		}
	}
	// get_next_key on an empty hash, with and without a key; lookup flags.
	Pair p = hash_pair("empty");
	ASSERT_TRUE(p);
	std::vector<uint8_t> k = u32key(5);
	EA a;
	a.key = &k;
	elem("empty GET_NEXT_KEY key 5", p, C_GET_NEXT_KEY, a);
	EA n;
	n.keyp = Ptr::NUL;
	elem("empty GET_NEXT_KEY key NULL", p, C_GET_NEXT_KEY, n);
	fill(p, 5, 1);
	elem("one-key GET_NEXT_KEY key 5", p, C_GET_NEXT_KEY, a);
	elem("one-key GET_NEXT_KEY key NULL", p, C_GET_NEXT_KEY, n);
	std::vector<uint8_t> k6 = u32key(6);
	EA b;
	b.key = &k6;
	elem("one-key GET_NEXT_KEY absent key 6", p, C_GET_NEXT_KEY, b);
	for (uint64_t f : {uint64_t{1}, uint64_t{2}, U_LOCK, uint64_t{8}, uint64_t{1} << 32,
			   uint64_t{1} << 63}) {
		a.flags = f;
		elem("LOOKUP flags " + std::to_string(f), p, C_LOOKUP, a);
		elem("LOOKUP_AND_DELETE flags " + std::to_string(f), p, C_LOOKUP_AND_DELETE, a);
		a.flags = 0;
		a.poke = {{E_FLAGS, static_cast<uint8_t>(f | 1)}};
		elem("GET_NEXT_KEY flags byte " + std::to_string(f | 1), p, C_GET_NEXT_KEY, a);
		elem("DELETE flags byte " + std::to_string(f | 1), p, C_DELETE, a);
		a.poke.clear();
	}
}

} // namespace
} // namespace kernel_diff
