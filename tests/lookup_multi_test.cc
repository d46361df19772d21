// bpfmap_map_lookup_multi and Map::lookup_ptr over many keys: for every map type with a
// pointer lookup, the answer of n single lookups, pointer for pointer, whatever the keys
// (present, absent, repeated), the count (none, one, fewer or many more than the hash
// family's prefetch distance) and after deletes; bad arguments change nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bpfmap/map.hpp"
#include "core/map.h"
#include "cpu_util.h"
#include "maps/hashtab.h"
#include "test_util.h"

using namespace bpfmap::test;

namespace {

struct multi_case {
	const char *name;
	uint32_t type, key_size, value_size, max_entries, flags;
};

bool is_array(const multi_case &c)
{
	return c.type == u::MAP_TYPE_ARRAY || c.type == u::MAP_TYPE_PERCPU_ARRAY;
}
bool is_lpm(const multi_case &c) { return c.type == u::MAP_TYPE_LPM_TRIE; }
bool is_percpu(const multi_case &c)
{
	return c.type == u::MAP_TYPE_PERCPU_HASH || c.type == u::MAP_TYPE_PERCPU_ARRAY ||
	       c.type == u::MAP_TYPE_LRU_PERCPU_HASH;
}

const multi_case CASES[] = {
	{"Hash_k4v8", u::MAP_TYPE_HASH, 4, 8, 2000, 0},
	{"Hash_k8v16", u::MAP_TYPE_HASH, 8, 16, 2000, 0},
	{"Hash_k16v64", u::MAP_TYPE_HASH, 16, 64, 2000, 0},
	{"Hash_k7v3", u::MAP_TYPE_HASH, 7, 3, 2000, 0},
	{"Hash_k4v8_NoPrealloc", u::MAP_TYPE_HASH, 4, 8, 2000, u::BPF_F_NO_PREALLOC},
	{"Hash_k4v8_Tiny", u::MAP_TYPE_HASH, 4, 8, 3, 0},
	{"PercpuHash_k4v8", u::MAP_TYPE_PERCPU_HASH, 4, 8, 2000, 0},
	{"LruHash_k4v8", u::MAP_TYPE_LRU_HASH, 4, 8, 2000, 0},
	{"LruHash_k12v8_NoCommonLru", u::MAP_TYPE_LRU_HASH, 12, 8, 2000, u::BPF_F_NO_COMMON_LRU},
	{"LruPercpuHash_k4v8", u::MAP_TYPE_LRU_PERCPU_HASH, 4, 8, 2000, 0},
	{"Array_k4v8", u::MAP_TYPE_ARRAY, 4, 8, 2000, 0},
	{"PercpuArray_k4v8", u::MAP_TYPE_PERCPU_ARRAY, 4, 8, 2000, 0},
	{"LpmTrie_k8v8", u::MAP_TYPE_LPM_TRIE, 8, 8, 2000, u::BPF_F_NO_PREALLOC},
};

void PrintTo(const multi_case &c, std::ostream *os) { *os << c.name; }

// Key number i of a case: distinct for distinct i. Array keys are the index (those past
// max_entries are absent); an LPM key is a /32 prefix.
std::vector<uint8_t> key_of(const multi_case &c, uint32_t i)
{
	std::vector<uint8_t> k(c.key_size, 0);
	uint32_t head = is_array(c) ? i : i * 0x9e3779b1u + 1;
	if (is_lpm(c)) {
		uint32_t len = 32;
		memcpy(k.data(), &len, 4);
		memcpy(k.data() + 4, &head, 4);
		return k;
	}
	memcpy(k.data(), &head, std::min<uint32_t>(4, c.key_size));
	for (uint32_t b = 4; b < c.key_size; b++)
		k[b] = static_cast<uint8_t>(i * 7 + b);
	return k;
}

// The highest-numbered CPU this thread may run on: a per-CPU lookup there reads a slot past
// the first, so a batch that took the wrong slot would not go unseen.
int last_allowed_cpu()
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return 0;
	for (int cpu = CPU_SETSIZE - 1; cpu > 0; cpu--)
		if (CPU_ISSET(cpu, &set))
			return cpu;
	return 0;
}

struct MultiLookup : ::testing::TestWithParam<multi_case> {
	int fd = -1;
	bpfmap_map *m = nullptr;
	uint32_t present = 0; // keys 0 .. present - 1 were inserted (arrays: every index)

	void SetUp() override
	{
		const multi_case &c = GetParam();
		fd = map_create(c.type, c.key_size, c.value_size, c.max_entries, c.flags);
		ASSERT_GE(fd, 0) << strerror(-fd);
		m = bpfmap_map_get(fd);
		ASSERT_NE(m, nullptr);
		// LRU maps: well below max_entries, so no insert evicts another.
		present = is_array(c) ? c.max_entries
			  : c.type == u::MAP_TYPE_LRU_HASH || c.type == u::MAP_TYPE_LRU_PERCPU_HASH
				  ? c.max_entries / 4
				  : c.max_entries;
		uint32_t vbytes = is_percpu(c)
					  ? (c.value_size + 7) / 8 * 8 * bpfmap_num_possible_cpus()
					  : c.value_size;
		std::vector<uint8_t> v(vbytes);
		for (uint32_t i = 0; i < present; i++) {
			std::vector<uint8_t> k = key_of(c, i);
			memset(v.data(), static_cast<int>(i), v.size());
			ASSERT_EQ(update(fd, k.data(), v.data()), 0) << "key " << i;
		}
	}
	void TearDown() override
	{
		bpfmap_map_put(m);
		if (fd >= 0)
			close(fd);
	}

	// n keys drawn from twice the inserted range (half absent), with repeats: every third
	// key is one of the last few again.
	std::vector<uint8_t> queries(uint32_t n, std::mt19937 &rng)
	{
		const multi_case &c = GetParam();
		std::vector<uint8_t> keys;
		for (uint32_t i = 0; i < n; i++) {
			size_t at = keys.size();
			if (i % 3 == 2) {
				size_t back = (1 + rng() % std::min<uint32_t>(i, 5)) * c.key_size;
				keys.insert(keys.end(), keys.begin() + static_cast<long>(at - back),
					    keys.begin() +
						    static_cast<long>(at - back + c.key_size));
				continue;
			}
			std::vector<uint8_t> k = key_of(c, rng() % (2 * present));
			keys.insert(keys.end(), k.begin(), k.end());
		}
		return keys;
	}

	// lookup_multi of keys against single lookups of each; the number found.
	long check_against_single(const std::vector<uint8_t> &keys, uint32_t n)
	{
		const uint32_t ks = GetParam().key_size;
		std::vector<void *> ptrs(n + 1, reinterpret_cast<void *>(0x1));
		long got = bpfmap_map_lookup_multi(m, keys.data(), n, ptrs.data());
		long want = 0;
		for (uint32_t i = 0; i < n; i++) {
			void *single = bpfmap_map_lookup_elem(m, keys.data() + size_t(i) * ks);
			EXPECT_EQ(ptrs[i], single) << "key " << i << " of " << n;
			want += single != nullptr;
		}
		EXPECT_EQ(ptrs[n], reinterpret_cast<void *>(0x1)) << "wrote past n";
		EXPECT_EQ(got, want) << "n " << n;
		return got;
	}
};

TEST_P(MultiLookup, AnswersWhatSingleLookupsAnswer)
{
	cpu_util::PinCpu pin(last_allowed_cpu()); // per-CPU maps: one CPU's values
	std::mt19937 rng(20);
	for (uint32_t n : {0u, 1u, 2u, 7u, 15u, 16u, 17u, 31u, 33u, 100u, 257u, 3000u}) {
		std::vector<uint8_t> keys = queries(n, rng);
		long found = check_against_single(keys, n);
		if (n >= 7) {
			EXPECT_GT(found, 0) << "n " << n;
		}
	}
	// Every inserted key at once, in order: all found.
	const multi_case &c = GetParam();
	std::vector<uint8_t> all;
	for (uint32_t i = 0; i < present; i++) {
		std::vector<uint8_t> k = key_of(c, i);
		all.insert(all.end(), k.begin(), k.end());
	}
	EXPECT_EQ(check_against_single(all, present), static_cast<long>(present));
}

TEST_P(MultiLookup, AnswersWhatSingleLookupsAnswerAfterDeletes)
{
	const multi_case &c = GetParam();
	if (is_array(c))
		GTEST_SKIP() << "array elements cannot be deleted";
	cpu_util::PinCpu pin(last_allowed_cpu());
	for (uint32_t i = 0; i < present; i += 2) {
		std::vector<uint8_t> k = key_of(c, i);
		ASSERT_EQ(del(fd, k.data()), 0) << "key " << i;
	}
	std::mt19937 rng(21);
	for (uint32_t n : {1u, 17u, 100u, 3000u})
		check_against_single(queries(n, rng), n);
	std::vector<uint8_t> all;
	for (uint32_t i = 0; i < present; i++) {
		std::vector<uint8_t> k = key_of(c, i);
		all.insert(all.end(), k.begin(), k.end());
	}
	EXPECT_EQ(check_against_single(all, present), static_cast<long>(present / 2));
}

TEST_P(MultiLookup, BadArgumentsAreEinvalAndWriteNothing)
{
	const multi_case &c = GetParam();
	std::vector<uint8_t> k = key_of(c, 0);
	void *sentinel = reinterpret_cast<void *>(0x1);
	void *ptrs[2] = {sentinel, sentinel};
	EXPECT_EQ(bpfmap_map_lookup_multi(nullptr, k.data(), 1, ptrs), -EINVAL);
	EXPECT_EQ(bpfmap_map_lookup_multi(m, nullptr, 1, ptrs), -EINVAL);
	EXPECT_EQ(bpfmap_map_lookup_multi(m, k.data(), 1, nullptr), -EINVAL);
	EXPECT_EQ(bpfmap_map_lookup_multi(nullptr, nullptr, 0, nullptr), -EINVAL);
	EXPECT_EQ(ptrs[0], sentinel);
	EXPECT_EQ(ptrs[1], sentinel);
	EXPECT_EQ(bpfmap_map_lookup_multi(m, nullptr, 0, nullptr), 0);
	EXPECT_EQ(bpfmap_map_lookup_multi(m, k.data(), 0, ptrs), 0);
	EXPECT_EQ(ptrs[0], sentinel);
}

INSTANTIATE_TEST_SUITE_P(Types, MultiLookup, ::testing::ValuesIn(CASES),
			 [](const auto &info) { return std::string(info.param.name); });

// A queue has no keys: every lookup answers NULL, one by one or many at once.
TEST(MultiLookupKeyless, QueueAnswersNull)
{
	int fd = map_create(u::MAP_TYPE_QUEUE, 0, 8, 4);
	ASSERT_GE(fd, 0);
	bpfmap_map *m = bpfmap_map_get(fd);
	uint64_t v = 7;
	ASSERT_EQ(bpfmap_map_push_elem(m, &v, 0), 0);
	void *ptrs[3] = {&v, &v, &v};
	EXPECT_EQ(bpfmap_map_lookup_multi(m, &v, 3, ptrs), 0);
	for (void *p : ptrs)
		EXPECT_EQ(p, nullptr);
	bpfmap_map_put(m);
	close(fd);
}

// An LRU lookup marks what it finds referenced, as the single lookup does; keys it did not
// ask for stay unmarked.
TEST(MultiLookupLru, MarksWhatItFindsReferenced)
{
	int fd = map_create(u::MAP_TYPE_LRU_HASH, 4, 8, 1000);
	ASSERT_GE(fd, 0);
	bpfmap_map *m = bpfmap_map_get(fd);
	auto *h = bpfmap::htab_of(reinterpret_cast<bpfmap::bpf_map *>(m));
	auto ref = [&](void *value) -> std::atomic<uint8_t> & {
		return h->lru_part(reinterpret_cast<bpfmap::htab_elem *>(
					   static_cast<char *>(value) - h->key_off_value))
			->lru_ref;
	};
	std::vector<uint32_t> keys(100);
	std::vector<void *> ptrs(keys.size());
	for (uint32_t i = 0; i < keys.size(); i++) {
		keys[i] = i * 31 + 5;
		uint64_t v = i;
		ASSERT_EQ(update(fd, &keys[i], &v), 0);
		ptrs[i] = bpfmap_map_lookup_elem(m, &keys[i]);
		ASSERT_NE(ptrs[i], nullptr);
		ref(ptrs[i]).store(0);
	}
	// Every other key, many more than the prefetch distance.
	std::vector<uint32_t> asked;
	for (uint32_t i = 0; i < keys.size(); i += 2)
		asked.push_back(keys[i]);
	std::vector<void *> got(asked.size());
	ASSERT_EQ(bpfmap_map_lookup_multi(m, asked.data(), static_cast<uint32_t>(asked.size()),
					  got.data()),
		  static_cast<long>(asked.size()));
	for (uint32_t i = 0; i < keys.size(); i++)
		EXPECT_EQ(ref(ptrs[i]).load(), i % 2 == 0 ? 1 : 0) << "key " << keys[i];
	bpfmap_map_put(m);
	close(fd);
}

// Keys that stay present while another thread replaces their values (an update of a present
// key links a new element in its place) and deletes and reinserts others: a batch finds
// every one of them, every time, as single lookups do.
TEST(MultiLookupConcurrent, PresentKeysAreFoundWhileAWriterReplacesThem)
{
	constexpr uint32_t N = 2000;
	int fd = map_create(u::MAP_TYPE_HASH, 4, 8, 2 * N);
	ASSERT_GE(fd, 0);
	bpfmap_map *m = bpfmap_map_get(fd);
	std::vector<uint32_t> keys(N);
	for (uint32_t i = 0; i < N; i++) {
		keys[i] = i * 2654435761u;
		uint64_t v = i;
		ASSERT_EQ(update(fd, &keys[i], &v), 0);
	}
	std::atomic<bool> stop{false};
	std::atomic<uint64_t> written{0}; // the writer's whole rounds
	std::thread writer([&] {
		for (uint64_t round = 0; !stop.load(); round++, written.store(round)) {
			for (uint32_t i = 0; i < N; i++) {
				update(fd, &keys[i], &round);
				uint32_t other = N + i; // never looked up: churns the pool
				update(fd, &other, &round);
				del(fd, &other);
			}
		}
	});
	std::vector<void *> ptrs(N);
	int rounds = 200 * SCALE;
	for (int r = 0; r < rounds || written.load() < 3; r++)
		ASSERT_EQ(bpfmap_map_lookup_multi(m, keys.data(), N, ptrs.data()), long{N})
			<< "round " << r;
	stop.store(true);
	writer.join();
	bpfmap_map_put(m);
	close(fd);
}

// The C++ forms: Map's over bytes, TypedMap's over keys, in chunks past 256 keys.
TEST(MultiLookupCxx, MapAndTypedMapAnswerWhatLookupPtrAnswers)
{
	bpfmap::TypedMap<uint32_t, uint64_t> tm;
	ASSERT_EQ((bpfmap::TypedMap<uint32_t, uint64_t>::create(bpfmap::MAP_HASH, 1000, tm)), 0);
	for (uint32_t k = 0; k < 1000; k += 2)
		ASSERT_EQ(tm.update(k, uint64_t{k} * 3), 0);
	std::vector<uint32_t> keys(700);
	for (uint32_t i = 0; i < keys.size(); i++)
		keys[i] = (i * 7) % 1000;

	std::vector<uint64_t *> typed(keys.size());
	uint32_t found = 0;
	ASSERT_EQ(tm.lookup_ptr(std::span<const uint32_t>(keys), std::span<uint64_t *>(typed),
				&found),
		  0);
	uint32_t want = 0;
	for (uint32_t i = 0; i < keys.size(); i++) {
		EXPECT_EQ(typed[i], tm.lookup_ptr(keys[i])) << "key " << keys[i];
		want += keys[i] % 2 == 0;
	}
	EXPECT_EQ(found, want);

	const bpfmap::Map &map = tm.map();
	std::vector<void *> raw(keys.size());
	auto bytes = std::as_bytes(std::span<const uint32_t>(keys));
	found = 0;
	ASSERT_EQ(map.lookup_ptr(bytes, std::span<void *>(raw), &found), 0);
	EXPECT_EQ(found, want);
	for (uint32_t i = 0; i < keys.size(); i++)
		EXPECT_EQ(raw[i], static_cast<void *>(typed[i]));
	// Not a whole number of keys, or not as many keys as pointers: EINVAL, nothing written.
	std::fill(raw.begin(), raw.end(), nullptr);
	EXPECT_EQ(map.lookup_ptr(bytes.first(bytes.size() - 1), std::span<void *>(raw)), EINVAL);
	EXPECT_EQ(map.lookup_ptr(bytes, std::span<void *>(raw).first(1)), EINVAL);
	EXPECT_EQ(tm.lookup_ptr(std::span<const uint32_t>(keys).first(3),
				std::span<uint64_t *>(typed).first(2)),
		  EINVAL);
	EXPECT_TRUE(std::all_of(raw.begin(), raw.end(), [](void *p) { return !p; }));
}

} // namespace
