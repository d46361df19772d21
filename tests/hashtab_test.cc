// BPF_MAP_TYPE_HASH through the bpf() entry point and the program-side ABI.
#include <gtest/gtest.h>

#include <csignal>
#include <fcntl.h>
#include <random>
#include <set>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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
		// Replacing keys in the full map rewrites them where they are.
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
	struct stat before {
	}, after{};
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

// An update of a key that exists rewrites its value in place (hashtab.h): the pointer a
// lookup returned reads the new value and stays the key's, and the map's pool is never
// touched, so a full map replaces keys without a spare element, from either ABI.
TEST_F(HashTest, UpdateOfPresentKeyRewritesInPlace)
{
	for (uint32_t flags : {0u, uint32_t{u::BPF_F_NO_PREALLOC}}) {
		make(4, 8, 2, flags);
		bpfmap_map *m = bpfmap_map_get(fd);
		ASSERT_NE(m, nullptr);
		uint32_t a = 1, b = 2;
		uint64_t v = 10, out = 0;
		ASSERT_EQ(update(fd, &a, &v), 0);
		ASSERT_EQ(update(fd, &b, &v), 0);
		auto *p = static_cast<uint64_t *>(bpfmap_map_lookup_elem(m, &a));
		ASSERT_NE(p, nullptr);
		for (uint64_t i = 0; i < 50; i++) {
			v = 100 + i;
			ASSERT_EQ(i % 2 ? update(fd, &a, &v, u::BPF_EXIST)
					: bpfmap_map_update_elem(m, &a, &v, u::BPF_ANY),
				  0);
			EXPECT_EQ(*p, v) << "flags " << flags << " round " << i;
			EXPECT_EQ(bpfmap_map_lookup_elem(m, &a), p);
		}
		EXPECT_EQ(lookup(fd, &b, &out), 0);
		EXPECT_EQ(out, 10u) << "the other key is untouched";
		uint32_t c = 3;
		EXPECT_EQ(update(fd, &c, &v), -E2BIG);
		bpfmap_map_put(m);
		close(fd);
		fd = -1;
	}
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

// ---- a corrupt region ------------------------------------------------------------------
//
// Another process may write anything into a map's file. These tests write bad indexes into
// bucket slots, chains and the pool's bits through a second mapping of the file, then run
// every command on the map in a child process: each must return (an errno, or a wrong
// answer), never crash nor hang.

// The hash family's control block and shared structures as hashtab.h lays them out.
struct ctl_view {
	uint64_t seed, locks_off, buckets_off, elems_off;
	uint32_t n_buckets, n_locks, n_elems, elem_size;
	uint64_t lru_off, used_off, full_off;
	uint32_t n_groups, group_elems;
};
struct bucket_view {
	uint64_t tagw[2]; // tags 0-7; tags 8-11 and, in the high half, the chain head
	uint32_t slot[12];
};
struct elem_view {
	uint32_t seq, next; // the header; an LRU element's hash and reference bit follow
};
constexpr uint32_t NULLS = 0x80000000u;
constexpr size_t CTL_OFFSET = 256; // inside the header page, the file's last page

// The whole file of a map, mapped a second time, behind bpfmap's back (the raw syscall:
// the interposed mmap() refuses a map that is not mmapable).
struct region_view {
	char *base = nullptr;
	size_t size = 0;
	ctl_view ctl{};

	explicit region_view(int fd)
	{
		struct stat st;
		if (fstat(fd, &st) != 0)
			return;
		void *p = reinterpret_cast<void *>(syscall(
			SYS_mmap, nullptr, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
		if (p == MAP_FAILED)
			return;
		base = static_cast<char *>(p);
		size = static_cast<size_t>(st.st_size);
		memcpy(&ctl, base + size - 4096 + CTL_OFFSET, sizeof(ctl));
	}
	~region_view()
	{
		if (base)
			syscall(SYS_munmap, base, size);
	}
	bucket_view *bucket(uint32_t b) const
	{
		return reinterpret_cast<bucket_view *>(base + ctl.buckets_off) + b;
	}
	elem_view *elem(uint32_t i) const
	{
		return reinterpret_cast<elem_view *>(base + ctl.elems_off +
						     size_t(i) * ctl.elem_size);
	}
	uint64_t *used() const { return reinterpret_cast<uint64_t *>(base + ctl.used_off); }
	uint64_t *full() const { return reinterpret_cast<uint64_t *>(base + ctl.full_off); }
	bool lru() const { return ctl.lru_off != 0; }
	static uint8_t tag(const bucket_view *bk, uint32_t i)
	{
		return static_cast<uint8_t>(bk->tagw[i / 8] >> (8 * (i % 8)));
	}
	static uint32_t chain_head(const bucket_view *bk) { return bk->tagw[1] >> 32; }
	static void set_chain_head(bucket_view *bk, uint32_t idx)
	{
		bk->tagw[1] = (bk->tagw[1] & 0xffffffffull) | uint64_t{idx} << 32;
	}
};

struct hash_kind {
	uint32_t type, flags;
	const char *name;
};

const hash_kind HASH_KINDS[] = {
	{u::MAP_TYPE_HASH, 0, "HASH"},
	{u::MAP_TYPE_HASH, u::BPF_F_NO_PREALLOC, "HASH_NO_PREALLOC"},
	{u::MAP_TYPE_PERCPU_HASH, 0, "PERCPU_HASH"},
	{u::MAP_TYPE_LRU_HASH, 0, "LRU_HASH"},
	{u::MAP_TYPE_LRU_HASH, u::BPF_F_NO_COMMON_LRU, "LRU_HASH_NO_COMMON_LRU"},
	{u::MAP_TYPE_LRU_PERCPU_HASH, 0, "LRU_PERCPU_HASH"},
};

constexpr uint32_t CORRUPT_MAX = 1200; // 256 buckets
constexpr uint32_t CORRUPT_KEYS = 600;

// Keys of one bucket (the map has a zero seed), enough that 28 of them are chained.
std::vector<uint32_t> keys_of_bucket(uint32_t b, uint32_t n_buckets, size_t n)
{
	std::vector<uint32_t> out;
	for (uint32_t k = 0; out.size() < n; k++)
		if ((bpfmap::hash_key(&k, 4, 0) & (n_buckets - 1)) == b)
			out.push_back(k);
	return out;
}

// Whether r is an answer a command may give on a corrupt map.
bool plausible(long r)
{
	return r == 0 || r == -ENOENT || r == -EFAULT || r == -EEXIST || r == -E2BIG ||
	       r == -ENOMEM || r == -ENOSPC;
}

// Every command, on keys 0..2*CORRUPT_KEYS and on `extra`. Returns the implausible answers.
int run_every_command(int fd, const std::vector<uint32_t> &extra)
{
	int bad = 0;
	std::vector<uint64_t> value(8 * 1024, 0); // room for every possible CPU's value
	std::vector<uint32_t> keys = extra;
	for (uint32_t k = 0; k < 2 * CORRUPT_KEYS; k++)
		keys.push_back(k);
	bpfmap_map *m = bpfmap_map_get(fd);
	if (!m)
		return 1;
	auto check = [&](long r) { bad += !plausible(r); };
	for (uint32_t k : keys) {
		check(lookup(fd, &k, value.data()));
		if (auto *p = static_cast<volatile uint64_t *>(bpfmap_map_lookup_elem(m, &k)))
			(void)*p;
	}
	// get_next_key: each call returns; a corrupt map may send the walk round in circles.
	uint32_t cur, next;
	const void *prev = nullptr;
	for (uint32_t i = 0; i < 4 * CORRUPT_MAX; i++) {
		long r = next_key(fd, prev, &next);
		check(r);
		if (r)
			break;
		cur = next;
		prev = &cur;
	}
	for (uint32_t k : keys)
		check(next_key(fd, &k, &next));
	// Batches, both kinds, in small and large steps.
	for (int cmd : {u::MAP_LOOKUP_BATCH, u::MAP_LOOKUP_AND_DELETE_BATCH}) {
		for (uint32_t count : {1u, 7u, CORRUPT_MAX}) {
			std::vector<uint32_t> bkeys(count);
			std::vector<uint64_t> bvals(size_t(count) * 1024);
			uint32_t token = 0;
			for (int i = 0; i < 4 * static_cast<int>(CORRUPT_MAX); i++) {
				u::bpf_attr a{};
				a.batch.in_batch = i ? ptr(&token) : 0;
				a.batch.out_batch = ptr(&token);
				a.batch.keys = ptr(bkeys.data());
				a.batch.values = ptr(bvals.data());
				a.batch.count = count;
				a.batch.map_fd = static_cast<uint32_t>(fd);
				long r = sys(cmd, a);
				check(r);
				if (r)
					break;
			}
			if (cmd == u::MAP_LOOKUP_AND_DELETE_BATCH)
				break; // the map is empty now, or as empty as it gets
		}
	}
	// Writers: every flag, both sides, and deletes.
	for (uint32_t k : keys) {
		for (uint64_t f : {u::BPF_ANY, u::BPF_NOEXIST, u::BPF_EXIST})
			check(update(fd, &k, value.data(), f));
		check(bpfmap_map_update_elem(m, &k, value.data(), u::BPF_ANY));
		check(lookup(fd, &k, value.data()));
		if (k % 3 == 0)
			check(del(fd, &k));
		else if (k % 3 == 1)
			check(elem(u::MAP_LOOKUP_AND_DELETE_ELEM, fd, &k, value.data()));
		else
			check(bpfmap_map_delete_elem(m, &k));
	}
	bpfmap_map_put(m);
	return bad;
}

// Run fn in a child; fail if the child dies of a signal, hangs (a minute: sanitizer builds
// are slow, a hang is endless), or returns a count of wrong answers other than 0.
template <typename F> void in_child(const char *what, F &&fn)
{
	pid_t pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0)
		_exit(std::min(fn(), 100));
	int status = 0;
	const int limit_ms = 60000;
	int waited = 0;
	while (waitpid(pid, &status, WNOHANG) == 0 && waited < limit_ms) {
		usleep(10000);
		waited += 10;
	}
	if (waited >= limit_ms) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		FAIL() << what << ": hung";
	}
	ASSERT_FALSE(WIFSIGNALED(status)) << what << ": killed by signal " << WTERMSIG(status);
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(WEXITSTATUS(status), 0) << what << ": wrong answers";
}

struct CorruptHash : ::testing::TestWithParam<hash_kind> {
	int fd = -1;
	std::vector<uint32_t> chained; // keys of bucket 5, most of them in its chain
	void SetUp() override
	{
		fd = map_create(GetParam().type, 4, 8, CORRUPT_MAX,
				GetParam().flags | u::BPF_F_ZERO_SEED);
		ASSERT_GE(fd, 0) << strerror(-fd);
		std::vector<uint64_t> value(8 * 1024, 7);
		for (uint32_t k = 0; k < CORRUPT_KEYS; k++)
			ASSERT_EQ(update(fd, &k, value.data()), 0);
		region_view r(fd);
		ASSERT_NE(r.base, nullptr);
		chained = keys_of_bucket(5, r.ctl.n_buckets, 40);
		for (uint32_t k : chained)
			ASSERT_EQ(update(fd, &k, value.data()), 0);
		ASSERT_FALSE(r.chain_head(r.bucket(5)) & NULLS) << "bucket 5 has a chain";
	}
	void TearDown() override
	{
		if (fd >= 0)
			close(fd);
	}
	// Corrupt the map with how(view), then run every command in a child.
	template <typename F> void corrupt_and_run(const char *what, F &&how)
	{
		{
			region_view r(fd);
			ASSERT_NE(r.base, nullptr);
			how(r);
		}
		in_child(what, [&] { return run_every_command(fd, chained); });
	}
};

TEST_P(CorruptHash, SlotIndexesPastThePool)
{
	corrupt_and_run("slots", [](region_view &r) {
		const uint32_t bad[] = {0xffffffffu, r.ctl.n_elems, r.ctl.n_elems + 1, 0x7fffffffu,
					NULLS | 3};
		int n = 0;
		for (uint32_t b = 0; b < r.ctl.n_buckets; b++)
			for (uint32_t i = 0; i < 12; i++)
				if (r.tag(r.bucket(b), i))
					r.bucket(b)->slot[i] = bad[n++ % 5];
	});
}

TEST_P(CorruptHash, ChainThatLoopsOnItself)
{
	corrupt_and_run("chain loop", [](region_view &r) {
		// The chain's last element leads back to its first, and a middle one to itself.
		uint32_t head = r.chain_head(r.bucket(5)), idx = head, steps = 0;
		while (!(r.elem(idx)->next & NULLS) && steps++ < 100)
			idx = r.elem(idx)->next;
		r.elem(idx)->next = head;
		uint32_t mid = r.elem(r.elem(head)->next)->next;
		r.elem(mid)->next = mid;
	});
}

TEST_P(CorruptHash, ChainLinksPastThePool)
{
	corrupt_and_run("chain index", [](region_view &r) {
		uint32_t second = r.elem(r.chain_head(r.bucket(5)))->next;
		r.elem(second)->next = r.ctl.n_elems + 5;
		r.set_chain_head(r.bucket(9), 0x7fffffffu); // a bucket without a chain gets one
	});
}

TEST_P(CorruptHash, ChainEndsInAnotherBucket)
{
	corrupt_and_run("chain marker", [](region_view &r) {
		uint32_t idx = r.chain_head(r.bucket(5));
		while (!(r.elem(idx)->next & NULLS))
			idx = r.elem(idx)->next;
		r.elem(idx)->next = NULLS | 6;
		for (uint32_t b = 10; b < 20; b++)
			r.set_chain_head(r.bucket(b), NULLS | (b + 1));
	});
}

// Every element looks like one a writer is still filling, forever.
TEST_P(CorruptHash, SequenceCountsThatStayOdd)
{
	corrupt_and_run("odd seq", [](region_view &r) {
		for (uint32_t i = 0; i < r.ctl.n_elems; i++)
			r.elem(i)->seq |= 1;
	});
}

// The pool says every element is free, bits past its end included, or that every one is
// taken.
TEST_P(CorruptHash, PoolBitsThatLie)
{
	if (region_view(fd).lru())
		GTEST_SKIP() << "an LRU map's free elements are the LRU's";
	for (uint64_t word : {0ull, ~0ull}) {
		corrupt_and_run(word ? "pool all taken" : "pool all free", [&](region_view &r) {
			uint32_t n_used = (r.ctl.n_elems + 63) / 64, n_full = (n_used + 63) / 64;
			for (uint32_t i = 0; i < n_used; i++)
				r.used()[i] = word;
			for (uint32_t i = 0; i < n_full; i++)
				r.full()[i] = word;
		});
	}
}

// The pool says only its last word's elements are free, the bits past its last element
// included: a writer that believed it would take elements past the end of the pool and
// link them.
TEST_P(CorruptHash, PoolBitsPastTheEndAreNeverTaken)
{
	if (region_view(fd).lru())
		GTEST_SKIP() << "an LRU map's free elements are the LRU's";
	{
		region_view r(fd);
		uint32_t n_used = (r.ctl.n_elems + 63) / 64, n_full = (n_used + 63) / 64;
		ASSERT_NE(r.ctl.n_elems % 64, 0u) << "no bits past the end to clear";
		memset(r.used(), 0xff, n_used * 8);
		r.used()[n_used - 1] = 0;
		memset(r.full(), 0, n_full * 8);
	}
	in_child("pool past the end", [&] {
		std::vector<uint64_t> value(8 * 1024, 3);
		for (uint32_t k = 100000; k < 100000 + 2 * CORRUPT_MAX; k++)
			if (update(fd, &k, value.data()) != 0)
				break;
		// Every index the buckets hold must name an element.
		region_view r(fd);
		int outside = 0;
		for (uint32_t b = 0; b < r.ctl.n_buckets; b++) {
			bucket_view *bk = r.bucket(b);
			for (uint32_t i = 0; i < 12; i++)
				outside += r.tag(bk, i) && bk->slot[i] >= r.ctl.n_elems;
			uint32_t idx = r.chain_head(bk);
			for (uint32_t n = 0; !(idx & NULLS) && n < r.ctl.n_elems; n++) {
				if (idx >= r.ctl.n_elems) {
					outside++;
					break;
				}
				idx = r.elem(idx)->next;
			}
		}
		return outside;
	});
}

// Random words over the buckets, the elements and the pool's bits (not the locks, nor an
// LRU's lists: theirs is another test's).
TEST_P(CorruptHash, RandomWordsOverBucketsAndElements)
{
	std::mt19937_64 rng(GetParam().type * 31 + GetParam().flags);
	for (int round = 0; round < 3; round++) {
		corrupt_and_run("random words", [&](region_view &r) {
			uint64_t begin = r.ctl.buckets_off;
			uint64_t end = r.lru() ? r.ctl.lru_off : r.size - 4096;
			auto *w = reinterpret_cast<uint64_t *>(r.base);
			for (int i = 0; i < 2000; i++) {
				uint64_t at = (begin + rng() % (end - begin)) / 8;
				switch (rng() % 4) {
				case 0:
					w[at] = 0;
					break;
				case 1:
					w[at] = ~0ull;
					break;
				case 2:
					w[at] = rng() % 4096 | (rng() % 4096) << 32;
					break;
				default:
					w[at] = rng();
					break;
				}
			}
		});
	}
}

INSTANTIATE_TEST_SUITE_P(Kinds, CorruptHash, ::testing::ValuesIn(HASH_KINDS),
			 [](const auto &info) { return std::string(info.param.name); });

// A control block that does not match what the header implies refuses the attach: a
// process that opens the map anew gets EINVAL, and nothing is mapped.
TEST(CorruptHashAttach, ControlBlockThatDisagreesIsRefused)
{
	for (const hash_kind &kind : HASH_KINDS) {
		int fd = map_create(kind.type, 4, 8, 100, kind.flags);
		ASSERT_GE(fd, 0);
		uint32_t k = 1;
		std::vector<uint64_t> value(8 * 1024, 1);
		ASSERT_EQ(update(fd, &k, value.data()), 0);
		// A second descriptor on the file: bpfmap attaches anew once the first is closed.
		int raw = open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDWR | O_CLOEXEC);
		ASSERT_GE(raw, 0);
		close(fd);
		struct stat st;
		ASSERT_EQ(fstat(raw, &st), 0);
		const off_t ctl = st.st_size - 4096 + CTL_OFFSET;
		for (size_t off : {offsetof(ctl_view, buckets_off), offsetof(ctl_view, n_elems),
				   offsetof(ctl_view, n_buckets), offsetof(ctl_view, elem_size),
				   offsetof(ctl_view, used_off), offsetof(ctl_view, n_groups)}) {
			uint32_t was, bad;
			ASSERT_EQ(pread(raw, &was, 4, ctl + off), 4);
			bad = was ^ 0x10000;
			ASSERT_EQ(pwrite(raw, &bad, 4, ctl + off), 4);
			EXPECT_EQ(lookup(raw, &k, value.data()), -EINVAL)
				<< kind.name << " offset " << off;
			ASSERT_EQ(pwrite(raw, &was, 4, ctl + off), 4);
		}
		// The seed may be anything (the keys just hash elsewhere).
		uint64_t seed = 0x1234567890abcdefull;
		ASSERT_EQ(pwrite(raw, &seed, 8, ctl + offsetof(ctl_view, seed)), 8);
		EXPECT_EQ(lookup(raw, &k, value.data()), -ENOENT) << kind.name;
		close(raw);
	}
}

} // namespace
