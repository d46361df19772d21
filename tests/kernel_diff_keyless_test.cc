// Kernel-differential tests of the maps without keys: QUEUE, STACK and BLOOM_FILTER.
#include "kernel_diff.h"

#include <cerrno>
#include <cstring>
#include <random>
#include <string>
#include <sys/mman.h>
#include <vector>

namespace kernel_diff {
namespace {

// ==== QUEUE, STACK, BLOOM_FILTER ==========================================================

const char *keyless_name(uint32_t type)
{
	return type == T_QUEUE ? "QUEUE" : type == T_STACK ? "STACK" : "BLOOM";
}

TEST_F(KernelDiff, KeylessCreateErrors)
{
	const create_case cases[] = {
		{"ok", 0, 8, 4, 0},
		{"key_size 4", 4, 8, 4, 0},
		{"value_size 0", 0, 0, 4, 0},
		{"value_size 4 MiB", 0, 1u << 22, 1, 0},
		{"value_size 4 MiB + 1", 0, (1u << 22) + 1, 1, 0},
		{"max_entries 0", 0, 8, 0, 0},
		{"NO_PREALLOC", 0, 8, 4, F_NO_PREALLOC},
		{"ZERO_SEED", 0, 8, 4, F_ZERO_SEED},
		{"NUMA_NODE", 0, 8, 4, F_NUMA_NODE},
		{"RDONLY_PROG", 0, 8, 4, F_RDONLY_PROG},
		{"WRONLY_PROG", 0, 8, 4, F_WRONLY_PROG},
		{"RDONLY", 0, 8, 4, F_RDONLY},
		{"MMAPABLE", 0, 8, 4, F_MMAPABLE},
		{"NO_COMMON_LRU", 0, 8, 4, F_NO_COMMON_LRU},
		{"map_extra 5", 0, 8, 4, 0, 5},
		{"map_extra 15", 0, 8, 4, 0, 15},
		{"map_extra 16", 0, 8, 4, 0, 16},
		{"map_extra 1<<32", 0, 8, 4, 0, 1ull << 32},
		{"key_size 4, value_size 0", 4, 0, 4, 0},
		{"key_size 4, value_size 4 MiB + 1", 4, (1u << 22) + 1, 1, 0},
		{"bloom huge", 0, 4, 0xffffffffu, 0, 15},
	};
	for (uint32_t type : {T_QUEUE, T_STACK, T_BLOOM}) {
		for (const create_case &c : cases) {
			if (type != T_BLOOM && std::string(c.name) == "bloom huge")
				continue;
			Req q = create_req(type, c);
			std::string label = std::string(keyless_name(type)) + " create " + c.name;
			Both b = check(label, q);
			if (b.k.ret >= 0 && b.u.ret >= 0 && c.vs < 4096) {
				Pair p = create_both(label + " (kept)", q);
				EXPECT_TRUE(p);
			}
		}
	}
}

// Every command on a queue or stack, in a random order that overflows and drains it.
TEST_F(KernelDiff, QueueStackSequences)
{
	std::mt19937_64 rng(global_seed() ^ 0x9e11);
	for (uint32_t type : {T_QUEUE, T_STACK}) {
		for (uint32_t max : {1u, 3u, 8u}) {
			for (uint32_t vs : {1u, 4u, 13u}) {
				std::string t = std::string(keyless_name(type)) + " max " +
						std::to_string(max) + " vs " + std::to_string(vs) +
						" ";
				Pair p = create_both(t, create_req(type, 0, vs, max));
				ASSERT_TRUE(p) << seed_str();
				std::vector<uint8_t> key = u32key(1);
				for (int i = 0; i < 200; i++) {
					std::vector<uint8_t> v(vs);
					for (auto &b : v)
						b = static_cast<uint8_t>(rng());
					EA a;
					a.keyp = Ptr::NUL;
					a.val = &v;
					std::string n = t + "#" + std::to_string(i) + " ";
					switch (rng() % 12) {
					case 0:
					case 1:
					case 2:
						elem(n + "push ANY", p, C_UPDATE, a);
						break;
					case 3:
						a.flags = U_EXIST;
						elem(n + "push EXIST", p, C_UPDATE, a);
						break;
					case 4: {
						static const uint64_t bad[] = {U_NOEXIST, 3, U_LOCK,
									       U_LOCK | U_EXIST, 8};
						a.flags = bad[rng() % 5];
						elem(n + "push flags " + std::to_string(a.flags), p,
						     C_UPDATE, a);
						break;
					}
					case 5:
					case 6:
						elem(n + "pop", p, C_LOOKUP_AND_DELETE, a);
						break;
					case 7:
						a.flags = rng() % 2 ? U_LOCK : 1;
						elem(n + "pop flags " + std::to_string(a.flags), p,
						     C_LOOKUP_AND_DELETE, a);
						break;
					case 8:
						elem(n + "peek", p, C_LOOKUP, a);
						break;
					case 9:
						a.flags = rng() % 2 ? U_LOCK : 2;
						elem(n + "peek flags " + std::to_string(a.flags), p,
						     C_LOOKUP, a);
						break;
					case 10:
						elem(n + "delete", p, C_DELETE, a);
						elem(n + "get_next_key", p, C_GET_NEXT_KEY, a);
						break;
					default: {
						a.keyp = Ptr::BUF;
						a.key = &key;
						int cmd = static_cast<int>(rng() % 5);
						const int cmds[] = {C_UPDATE, C_LOOKUP, C_DELETE,
								    C_GET_NEXT_KEY,
								    C_LOOKUP_AND_DELETE};
						elem(n + "with a key pointer, cmd " +
							     std::to_string(cmds[cmd]),
						     p, cmds[cmd], a);
					}
					}
				}
				// Drain what is left, in order.
				EA a;
				a.keyp = Ptr::NUL;
				for (uint32_t i = 0; i <= max; i++)
					elem(t + "drain pop", p, C_LOOKUP_AND_DELETE, a);
				a.valp = Ptr::NUL;
				elem(t + "pop value NULL", p, C_LOOKUP_AND_DELETE, a);
				elem(t + "peek value NULL", p, C_LOOKUP, a);
				elem(t + "push value NULL", p, C_UPDATE, a);
				elem(t + "FREEZE", p, C_FREEZE, a);
				EA f;
				f.keyp = Ptr::NUL;
				std::vector<uint8_t> v(vs, 7);
				f.val = &v;
				elem(t + "push after freeze", p, C_UPDATE, f);
				elem(t + "peek after freeze", p, C_LOOKUP, f);
				elem(t + "pop after freeze", p, C_LOOKUP_AND_DELETE, f);
			}
		}
	}
}

// The batch commands are not served for these types (the kernel's ENOTSUPP).
TEST_F(KernelDiff, KeylessBatchAndMmap)
{
	for (uint32_t type : {T_QUEUE, T_STACK, T_BLOOM}) {
		std::string t = keyless_name(type);
		Pair p = create_both(t, create_req(type, 0, 8, 4));
		ASSERT_TRUE(p);
		for (int cmd :
		     {C_LOOKUP_BATCH, C_LOOKUP_AND_DELETE_BATCH, C_UPDATE_BATCH, C_DELETE_BATCH}) {
			Req q(cmd);
			q.fd(36, p.k, p.u); // batch.map_fd
			q.u32(32, 1);	    // batch.count
			check(t + " batch cmd " + std::to_string(cmd), q);
		}
		void *km = mmap(nullptr, 4096, PROT_READ, MAP_SHARED, p.k, 0);
		int ke = km == MAP_FAILED ? errno : 0;
		void *um = mmap(nullptr, 4096, PROT_READ, MAP_SHARED, p.u, 0);
		int ue = um == MAP_FAILED ? errno : 0;
		EXPECT_EQ(ke, ue) << t << " mmap: kernel " << errname(ke) << ", bpfmap "
				  << errname(ue);
		if (km != MAP_FAILED)
			munmap(km, 4096);
		if (um != MAP_FAILED)
			munmap(um, 4096);
	}
}

// A bloom filter's answers are a function of its bits. With BPF_F_ZERO_SEED the kernel's
// seed is 0, so the same pushes must give the same answer to every peek, false positives
// included; every pushed value must be found (no false negatives).
TEST_F(KernelDiff, BloomZeroSeedAnswersEveryPeekAsTheKernel)
{
	std::mt19937_64 rng(global_seed() ^ 0xb100);
	for (uint32_t vs : {1u, 3u, 4u, 8u, 13u, 16u, 64u}) {
		for (uint64_t k : {0ull, 1ull, 3ull, 15ull}) {
			for (uint32_t max : {1u, 50u, 1000u}) {
				std::string t = "BLOOM vs " + std::to_string(vs) + " k " +
						std::to_string(k) + " max " + std::to_string(max) +
						" ";
				Req q = create_req(T_BLOOM, 0, vs, max, F_ZERO_SEED);
				q.u64(MC_EXTRA, k);
				Pair p = create_both(t, q);
				ASSERT_TRUE(p) << seed_str();
				uint32_t pushes = max;
				std::vector<std::vector<uint8_t>> in;
				for (uint32_t i = 0; i < pushes; i++) {
					std::vector<uint8_t> v(vs);
					for (auto &b : v)
						b = static_cast<uint8_t>(rng());
					EA a;
					a.keyp = Ptr::NUL;
					a.val = &v;
					Both b = elem(t + "push", p, C_UPDATE, a);
					ASSERT_EQ(b.k.ret, 0);
					in.push_back(v);
				}
				int fp_k = 0, fp_u = 0, mism = 0;
				for (int i = 0; i < 400; i++) {
					std::vector<uint8_t> v(vs);
					bool was_in = i % 4 == 0;
					if (was_in)
						v = in[rng() % in.size()];
					else
						for (auto &b : v)
							b = static_cast<uint8_t>(rng());
					EA a;
					a.keyp = Ptr::NUL;
					a.val = &v;
					bool same = true;
					Both b = elem(t + "peek", p, C_LOOKUP, a, &same);
					mism += !same;
					if (was_in)
						EXPECT_EQ(b.u.ret, 0) << t << "a false negative";
					else {
						fp_k += b.k.ret == 0;
						fp_u += b.u.ret == 0;
					}
				}
				EXPECT_EQ(fp_k, fp_u) << t << "false positives";
				if (mism)
					break;
			}
		}
	}
}

TEST_F(KernelDiff, BloomCommandErrors)
{
	Pair p = create_both("BLOOM", create_req(T_BLOOM, 0, 4, 16, F_ZERO_SEED));
	ASSERT_TRUE(p);
	std::vector<uint8_t> v = u32key(7), key = u32key(1);
	for (uint64_t f : {U_ANY, U_NOEXIST, U_EXIST, U_LOCK, uint64_t{8}}) {
		EA a;
		a.keyp = Ptr::NUL;
		a.val = &v;
		a.flags = f;
		elem("BLOOM push flags " + std::to_string(f), p, C_UPDATE, a);
		elem("BLOOM peek flags " + std::to_string(f), p, C_LOOKUP, a);
		elem("BLOOM lookup_and_delete flags " + std::to_string(f), p, C_LOOKUP_AND_DELETE,
		     a);
	}
	EA a;
	a.keyp = Ptr::NUL;
	a.val = &v;
	elem("BLOOM delete", p, C_DELETE, a);
	elem("BLOOM get_next_key", p, C_GET_NEXT_KEY, a);
	a.valp = Ptr::NUL;
	elem("BLOOM peek value NULL", p, C_LOOKUP, a);
	a.valp = Ptr::BAD;
	elem("BLOOM peek value bad", p, C_LOOKUP, a);
	EA k;
	k.key = &key;
	k.val = &v;
	for (int cmd : {C_UPDATE, C_LOOKUP, C_DELETE, C_GET_NEXT_KEY, C_LOOKUP_AND_DELETE})
		elem("BLOOM with a key pointer, cmd " + std::to_string(cmd), p, cmd, k);
	EA f;
	f.keyp = Ptr::NUL;
	elem("BLOOM FREEZE", p, C_FREEZE, f);
	f.val = &v;
	elem("BLOOM push after freeze", p, C_UPDATE, f);
	elem("BLOOM peek after freeze", p, C_LOOKUP, f);
}

// With a random seed on each side, the false-positive rate must still be the kernel's
// (same bit-array size and number of hashes): within 1.5x over 20,000 absent values.
TEST_F(KernelDiff, BloomFalsePositiveRateMatchesKernel)
{
	std::mt19937_64 rng(global_seed() ^ 0xfa15e);
	for (uint64_t k : {1ull, 5ull}) {
		Req q = create_req(T_BLOOM, 0, 8, 1000);
		q.u64(MC_EXTRA, k);
		Pair p = create_both("BLOOM rate", q);
		ASSERT_TRUE(p);
		for (int i = 0; i < 1000; i++) {
			uint64_t v = rng() | 1; // pushed values are odd, probes even
			std::vector<uint8_t> b(8);
			memcpy(b.data(), &v, 8);
			EA e;
			e.keyp = Ptr::NUL;
			e.val = &b;
			elem("BLOOM rate push", p, C_UPDATE, e);
		}
		int fp_k = 0, fp_u = 0;
		const int probes = 20000;
		for (int i = 0; i < probes; i++) {
			uint64_t v = rng() & ~1ull;
			uint8_t kb[168] = {}, ub[168] = {};
			for (uint8_t *attr : {kb, ub}) {
				uint32_t fd = static_cast<uint32_t>(attr == kb ? p.k : p.u);
				uint64_t ptr = reinterpret_cast<uintptr_t>(&v);
				memcpy(attr, &fd, 4);
				memcpy(attr + 16, &ptr, 8);
			}
			fp_k += call_side(true, C_LOOKUP, kb, sizeof(kb)) == 0;
			fp_u += call_side(false, C_LOOKUP, ub, sizeof(ub)) == 0;
		}
		printf("[kernel_diff] bloom k=%llu, 1000 values in %d bits: false positives kernel "
		       "%d, "
		       "bpfmap %d of %d\n",
		       static_cast<unsigned long long>(k), k == 1 ? 2048 : 8192, fp_k, fp_u,
		       probes);
		EXPECT_LE(fp_u, fp_k * 3 / 2 + 10);
		EXPECT_GE(fp_u * 3 / 2 + 10, fp_k);
	}
}

} // namespace
} // namespace kernel_diff
