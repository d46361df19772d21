// BPF_MAP_TYPE_HASH through the bpf() entry point and the program-side ABI.
#include <gtest/gtest.h>

#include <set>
#include <sys/stat.h>
#include <vector>

#include "core/hash.h"
#include "test_util.h"

using namespace bpfmap::test;

namespace {

struct HashTest : ::testing::Test {
	int fd = -1;
	void make(uint32_t key, uint32_t value, uint32_t max, uint32_t flags = 0)
	{
		fd = map_create(u::MAP_TYPE_HASH, key, value, max, flags);
		ASSERT_GE(fd, 0) << strerror(-fd);
	}
	void TearDown() override
	{
		if (fd >= 0)
			close(fd);
	}
	std::set<uint32_t> keys()
	{
		std::set<uint32_t> out;
		uint32_t k, n;
		const void *cur = nullptr;
		while (next_key(fd, cur, &n) == 0) {
			EXPECT_TRUE(out.insert(n).second) << "key " << n << " returned twice";
			k = n;
			cur = &k;
		}
		return out;
	}
};

TEST_F(HashTest, UpdateFlagsFollowTheKernel)
{
	make(4, 8, 4);
	uint32_t k = 1;
	uint64_t v = 10, out = 0;
	EXPECT_EQ(update(fd, &k, &v, u::BPF_EXIST), -ENOENT);
	EXPECT_EQ(update(fd, &k, &v, u::BPF_NOEXIST), 0);
	EXPECT_EQ(update(fd, &k, &v, u::BPF_NOEXIST), -EEXIST);
	v = 11;
	EXPECT_EQ(update(fd, &k, &v, u::BPF_EXIST), 0);
	EXPECT_EQ(lookup(fd, &k, &out), 0);
	EXPECT_EQ(out, 11u);
	EXPECT_EQ(update(fd, &k, &v, 3), -EINVAL);
	EXPECT_EQ(update(fd, &k, &v, u::BPF_F_LOCK), -EINVAL);
	EXPECT_EQ(update(fd, &k, &v, 1ull << 32), -EINVAL);
}

TEST_F(HashTest, FullMapRefusesNewKeysButReplacesExistingOnes)
{
	make(4, 8, 3);
	uint64_t v = 7;
	for (uint32_t k = 0; k < 3; k++)
		ASSERT_EQ(update(fd, &k, &v), 0);
	uint32_t k = 3;
	EXPECT_EQ(update(fd, &k, &v), -E2BIG);
	EXPECT_EQ(update(fd, &k, &v, u::BPF_NOEXIST), -E2BIG);
	EXPECT_EQ(update(fd, &k, &v, u::BPF_EXIST), -ENOENT);
	for (int round = 0; round < 100; round++) {
		k = round % 3;
		v = round;
		ASSERT_EQ(update(fd, &k, &v), 0) << "replacing in a full map, round " << round;
	}
	k = 0;
	EXPECT_EQ(del(fd, &k), 0);
	k = 3;
	EXPECT_EQ(update(fd, &k, &v), 0) << "a delete frees one place";
	EXPECT_EQ(keys(), (std::set<uint32_t>{1, 2, 3}));
}

TEST_F(HashTest, NoPreallocBehavesTheSame)
{
	make(4, 8, 100, u::BPF_F_NO_PREALLOC);
	uint64_t v = 1;
	for (uint32_t k = 0; k < 100; k++)
		ASSERT_EQ(update(fd, &k, &v), 0);
	uint32_t k = 100;
	EXPECT_EQ(update(fd, &k, &v), -E2BIG);
	EXPECT_EQ(keys().size(), 100u);
}

// A preallocated map takes each key's element near where its hash says (its homes) when
// it can, anywhere else when not: round after round of filling and emptying, every one of
// max_entries keys finds a place, the next one does not, and every key reads back its own
// value, whatever the placement.
TEST_F(HashTest, PoolServesFullCapacityRoundAfterRound)
{
	const uint32_t max = 1000;
	make(4, 8, max);
	for (uint32_t round = 0; round < 20; round++) {
		uint32_t base = round * 7919; // different keys, so different homes, each round
		for (uint32_t i = 0; i < max; i++) {
			uint32_t k = base + i;
			uint64_t v = static_cast<uint64_t>(k) << 20 | round;
			ASSERT_EQ(update(fd, &k, &v), 0) << "round " << round << " key " << i;
		}
		uint32_t extra = base + max;
		uint64_t v = 0, out = 0;
		ASSERT_EQ(update(fd, &extra, &v), -E2BIG) << "round " << round;
		// Replacing keys in the full map takes the spares, then gives the old elements back.
		for (uint32_t i = 0; i < max; i += 3) {
			uint32_t k = base + i;
			v = static_cast<uint64_t>(k) << 20 | round;
			ASSERT_EQ(update(fd, &k, &v, u::BPF_EXIST), 0);
		}
		for (uint32_t i = 0; i < max; i++) {
			uint32_t k = base + i;
			ASSERT_EQ(lookup(fd, &k, &out), 0);
			ASSERT_EQ(out, static_cast<uint64_t>(k) << 20 | round);
		}
		// Empty it in an order unrelated to the insertion order.
		for (uint32_t i = 0; i < max; i++) {
			uint32_t k = base + (i * 389) % max;
			ASSERT_EQ(del(fd, &k), 0);
		}
		ASSERT_TRUE(keys().empty());
	}
}

// BPF_F_NO_PREALLOC: elements are taken lowest first, so the memory a map holds grows with
// its keys instead of being touched all over by the first few.
TEST_F(HashTest, NoPreallocMemoryGrowsWithTheKeys)
{
	const uint32_t max = 1u << 20, n = 20000;
	make(4, 8, max, u::BPF_F_NO_PREALLOC);
	struct stat before{}, after{};
	ASSERT_EQ(fstat(fd, &before), 0);
	for (uint32_t k = 0; k < n; k++) {
		uint64_t v = k;
		ASSERT_EQ(update(fd, &k, &v), 0);
	}
	ASSERT_EQ(fstat(fd, &after), 0);
	int64_t grown = (after.st_blocks - before.st_blocks) * 512;
	// 20000 elements of 32 bytes fill 160 pages; spread over the million-element pool they
	// would have touched nearly all of its 8192.
	EXPECT_LT(grown, 4 << 20) << "committed " << grown << " bytes for " << n << " keys";
	EXPECT_LT(static_cast<int64_t>(before.st_blocks) * 512, after.st_size / 2)
		<< "a fresh map is committed already";
}

TEST_F(HashTest, GetNextKeyVisitsEveryKeyOnceAndRestartsOnMissingKey)
{
	make(4, 4, 1000);
	std::set<uint32_t> want;
	for (uint32_t k = 0; k < 1000; k += 3) {
		uint32_t v = k;
		ASSERT_EQ(update(fd, &k, &v), 0);
		want.insert(k);
	}
	EXPECT_EQ(keys(), want);
	uint32_t first, again, missing = 1;
	ASSERT_EQ(next_key(fd, nullptr, &first), 0);
	ASSERT_EQ(next_key(fd, &missing, &again), 0);
	EXPECT_EQ(first, again);
}

TEST_F(HashTest, EmptyMapHasNoFirstKey)
{
	make(4, 4, 8);
	uint32_t k = 5, n;
	EXPECT_EQ(next_key(fd, nullptr, &n), -ENOENT);
	EXPECT_EQ(next_key(fd, &k, &n), -ENOENT);
}

TEST_F(HashTest, LookupAndDeleteReturnsTheValueOnce)
{
	make(4, 8, 8);
	uint32_t k = 9;
	uint64_t v = 99, out = 0;
	ASSERT_EQ(update(fd, &k, &v), 0);
	EXPECT_EQ(elem(u::MAP_LOOKUP_AND_DELETE_ELEM, fd, &k, &out, 1), -EINVAL);
	EXPECT_EQ(elem(u::MAP_LOOKUP_AND_DELETE_ELEM, fd, &k, &out), 0);
	EXPECT_EQ(out, 99u);
	EXPECT_EQ(elem(u::MAP_LOOKUP_AND_DELETE_ELEM, fd, &k, &out), -ENOENT);
	EXPECT_EQ(lookup(fd, &k, &out), -ENOENT);
}

TEST_F(HashTest, OddSizesKeepKeysAndValuesExact)
{
	make(3, 5, 64);
	for (uint8_t i = 0; i < 64; i++) {
		uint8_t key[3] = {i, static_cast<uint8_t>(i ^ 0x5a), 7};
		uint8_t val[5] = {1, 2, 3, 4, i};
		ASSERT_EQ(update(fd, key, val), 0);
	}
	for (uint8_t i = 0; i < 64; i++) {
		uint8_t key[3] = {i, static_cast<uint8_t>(i ^ 0x5a), 7};
		uint8_t val[6] = {0, 0, 0, 0, 0, 0xee};
		ASSERT_EQ(lookup(fd, key, val), 0);
		EXPECT_EQ(val[4], i);
		EXPECT_EQ(val[5], 0xee) << "lookup wrote past value_size";
	}
}

// Keys that all land in one bucket exercise the overflow chain: insert, replace,
// delete from its head, middle and tail, and iteration through it.
TEST_F(HashTest, OverflowChainOfOneBucket)
{
	const uint32_t max = 1200; // 256 buckets
	make(4, 8, max, u::BPF_F_ZERO_SEED);
	std::vector<uint32_t> same;
	for (uint32_t k = 0; same.size() < 40; k++)
		if ((bpfmap::hash_key(&k, 4, 0) & 255) == 7)
			same.push_back(k);
	for (uint32_t k : same) {
		uint64_t v = k;
		ASSERT_EQ(update(fd, &k, &v, u::BPF_NOEXIST), 0);
	}
	for (uint32_t k : same) {
		uint64_t v = k * 2ull;
		ASSERT_EQ(update(fd, &k, &v, u::BPF_EXIST), 0);
	}
	EXPECT_EQ(keys(), std::set<uint32_t>(same.begin(), same.end()));
	for (size_t i = 0; i < same.size(); i += 3)
		ASSERT_EQ(del(fd, &same[i]), 0);
	for (size_t i = 0; i < same.size(); i++) {
		uint64_t v = 0;
		long r = lookup(fd, &same[i], &v);
		if (i % 3 == 0) {
			EXPECT_EQ(r, -ENOENT);
		} else {
			EXPECT_EQ(r, 0);
			EXPECT_EQ(v, same[i] * 2ull);
		}
	}
	EXPECT_EQ(keys().size(), same.size() - (same.size() + 2) / 3);
}

TEST_F(HashTest, ZeroSeedMapsIterateInTheSameOrder)
{
	int a = map_create(u::MAP_TYPE_HASH, 4, 4, 100, u::BPF_F_ZERO_SEED);
	int b = map_create(u::MAP_TYPE_HASH, 4, 4, 100, u::BPF_F_ZERO_SEED);
	ASSERT_GE(a, 0);
	ASSERT_GE(b, 0);
	for (uint32_t k = 0; k < 50; k++) {
		ASSERT_EQ(update(a, &k, &k), 0);
		ASSERT_EQ(update(b, &k, &k), 0);
	}
	uint32_t ka, kb;
	const void *ca = nullptr, *cb = nullptr;
	uint32_t pa, pb;
	for (;;) {
		long ra = next_key(a, ca, &ka), rb = next_key(b, cb, &kb);
		ASSERT_EQ(ra, rb);
		if (ra)
			break;
		ASSERT_EQ(ka, kb);
		pa = ka;
		pb = kb;
		ca = &pa;
		cb = &pb;
	}
	close(a);
	close(b);
}

TEST_F(HashTest, PointerLookupSeesAndChangesTheStoredValue)
{
	make(4, 8, 16);
	bpfmap_map *m = bpfmap_map_get(fd);
	ASSERT_NE(m, nullptr);
	uint32_t k = 4;
	uint64_t v = 40;
	EXPECT_EQ(bpfmap_map_lookup_elem(m, &k), nullptr);
	EXPECT_EQ(bpfmap_map_update_elem(m, &k, &v, u::BPF_ANY), 0);
	auto *p = static_cast<uint64_t *>(bpfmap_map_lookup_elem(m, &k));
	ASSERT_NE(p, nullptr);
	EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 8, 0u) << "values are 8-byte aligned";
	EXPECT_EQ(*p, 40u);
	*p = 41;
	uint64_t out;
	EXPECT_EQ(lookup(fd, &k, &out), 0);
	EXPECT_EQ(out, 41u);
	EXPECT_EQ(bpfmap_map_update_elem(m, &k, &v, u::BPF_NOEXIST), -EEXIST);
	EXPECT_EQ(bpfmap_map_delete_elem(m, &k), 0);
	EXPECT_EQ(bpfmap_map_delete_elem(m, &k), -ENOENT);
	bpfmap_map_put(m);
}

// BPF_F_RDONLY_PROG limits programs, not the syscall side: a program cannot write the map
// (the kernel's verifier refuses it with EACCES) while user space still can.
TEST_F(HashTest, ReadOnlyProgMapRefusesProgramWrites)
{
	make(4, 8, 16, u::BPF_F_RDONLY_PROG);
	bpfmap_map *m = bpfmap_map_get(fd);
	ASSERT_NE(m, nullptr);
	uint32_t k = 4;
	uint64_t v = 40;
	EXPECT_EQ(bpfmap_map_update_elem(m, &k, &v, u::BPF_ANY), -EACCES);
	EXPECT_EQ(bpfmap_map_lookup_elem(m, &k), nullptr) << "the refused update stored nothing";
	EXPECT_EQ(update(fd, &k, &v), 0);
	auto *p = static_cast<uint64_t *>(bpfmap_map_lookup_elem(m, &k));
	ASSERT_NE(p, nullptr);
	EXPECT_EQ(*p, 40u);
	EXPECT_EQ(bpfmap_map_delete_elem(m, &k), -EACCES);
	EXPECT_EQ(del(fd, &k), 0);
	bpfmap_map_put(m);
}

} // namespace
