// BPF_MAP_TYPE_ARRAY: index rules, in-place values, and the mmap layout; then ARRAY and
// PERCPU_ARRAY as untrusted shared memory: a header and sequence counts scribbled on after
// attach, after which every command must still give the answers it gave.
#include <gtest/gtest.h>

#include <string>
#include <sys/mman.h>

#include "region_poke.h"
#include "test_util.h"

using namespace bpfmap::test;

namespace {

TEST(Array, IndexRulesFollowTheKernel)
{
	int fd = map_create(u::MAP_TYPE_ARRAY, 4, 12, 3);
	ASSERT_GE(fd, 0);
	uint32_t k = 1;
	char v[12] = "hello", out[12] = {};
	EXPECT_EQ(lookup(fd, &k, out), 0) << "every element exists from the start";
	EXPECT_EQ(update(fd, &k, v), 0);
	EXPECT_EQ(lookup(fd, &k, out), 0);
	EXPECT_STREQ(out, "hello");
	EXPECT_EQ(update(fd, &k, v, u::BPF_NOEXIST), -EEXIST);
	EXPECT_EQ(update(fd, &k, v, u::BPF_EXIST), 0);
	k = 3;
	EXPECT_EQ(update(fd, &k, v), -E2BIG);
	EXPECT_EQ(update(fd, &k, v, u::BPF_NOEXIST), -E2BIG);
	EXPECT_EQ(lookup(fd, &k, out), -ENOENT);
	k = 0;
	EXPECT_EQ(del(fd, &k), -EINVAL);
	EXPECT_EQ(elem(u::MAP_LOOKUP_AND_DELETE_ELEM, fd, &k, out), -524);
	close(fd);
}

TEST(Array, GetNextKeyWalksIndexesAndRestartsPastTheEnd)
{
	int fd = map_create(u::MAP_TYPE_ARRAY, 4, 4, 3);
	ASSERT_GE(fd, 0);
	uint32_t k, n;
	EXPECT_EQ(next_key(fd, nullptr, &n), 0);
	EXPECT_EQ(n, 0u);
	k = 1;
	EXPECT_EQ(next_key(fd, &k, &n), 0);
	EXPECT_EQ(n, 2u);
	k = 2;
	EXPECT_EQ(next_key(fd, &k, &n), -ENOENT);
	k = 77;
	EXPECT_EQ(next_key(fd, &k, &n), 0);
	EXPECT_EQ(n, 0u);
	close(fd);
}

TEST(Array, MmapShowsValuesAtTheKernelsStride)
{
	const uint32_t max = 1025, vsize = 5; // stride 8, three pages
	int fd = map_create(u::MAP_TYPE_ARRAY, 4, vsize, max, u::BPF_F_MMAPABLE);
	ASSERT_GE(fd, 0);
	size_t len = 3 * 4096;
	auto *mem = static_cast<unsigned char *>(
		mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
	ASSERT_NE(mem, MAP_FAILED);
	uint32_t k = 1024;
	unsigned char v[5] = {9, 8, 7, 6, 5}, out[5];
	ASSERT_EQ(update(fd, &k, v), 0);
	EXPECT_EQ(memcmp(mem + 1024 * 8, v, 5), 0);
	mem[8 * 3] = 42;
	k = 3;
	ASSERT_EQ(lookup(fd, &k, out), 0);
	EXPECT_EQ(out[0], 42);
	munmap(mem, len);
	close(fd);
}

TEST(Array, FrozenMapRefusesSyscallWritesButNotPrograms)
{
	int fd = map_create(u::MAP_TYPE_ARRAY, 4, 8, 2);
	ASSERT_GE(fd, 0);
	u::bpf_attr a{};
	a.elem.map_fd = static_cast<uint32_t>(fd);
	EXPECT_EQ(sys(u::MAP_FREEZE, a), 0);
	EXPECT_EQ(sys(u::MAP_FREEZE, a), -EPERM);
	uint32_t k = 0;
	uint64_t v = 5, out;
	EXPECT_EQ(update(fd, &k, &v), -EPERM);
	EXPECT_EQ(lookup(fd, &k, &out), 0);
	bpfmap_map *m = bpfmap_map_get(fd);
	ASSERT_NE(m, nullptr);
	EXPECT_EQ(bpfmap_map_update_elem(m, &k, &v, 0), 0);
	EXPECT_EQ(lookup(fd, &k, &out), 0);
	EXPECT_EQ(out, 5u);
	bpfmap_map_put(m);
	close(fd);
}

} // namespace

namespace {

long info_hash(int fd, uint8_t *digest)
{
	u::bpf_map_info info{};
	info.hash = ptr(digest);
	info.hash_size = 32;
	u::bpf_attr a{};
	a.info = {static_cast<uint32_t>(fd), sizeof(info), ptr(&info)};
	return sys(u::OBJ_GET_INFO_BY_FD, a);
}

// 6.18 reports the SHA-256 of a frozen array's values, each padded to 8 bytes.
TEST(Array, FrozenArrayReportsTheSha256OfItsValues)
{
	int fd = map_create(u::MAP_TYPE_ARRAY, 4, 4, 3); // stride 8: 24 bytes hashed
	ASSERT_GE(fd, 0);
	uint32_t k = 0, v = 7;
	ASSERT_EQ(update(fd, &k, &v), 0);
	k = 1;
	v = 9;
	ASSERT_EQ(update(fd, &k, &v), 0);
	uint8_t digest[32] = {};
	EXPECT_EQ(info_hash(fd, digest), -EPERM) << "not frozen yet";
	u::bpf_attr a{};
	a.elem.map_fd = static_cast<uint32_t>(fd);
	ASSERT_EQ(sys(u::MAP_FREEZE, a), 0);
	ASSERT_EQ(info_hash(fd, digest), 0);
	EXPECT_EQ(hex(digest, 32),
		  "31dd8bde7082c8b439f17b0c8a141465637f9bc9c3f1e5f944692d4dac905467");
	close(fd);

	int hash = map_create(u::MAP_TYPE_HASH, 4, 4, 3);
	EXPECT_EQ(info_hash(hash, digest), -EINVAL) << "hash maps have no digest";
	close(hash);
}

// Multi-block input, checked against a digest computed elsewhere (Python's hashlib).
TEST(Array, Sha256OfALongArray)
{
	int fd = map_create(u::MAP_TYPE_ARRAY, 4, 8, 25); // 200 bytes
	ASSERT_GE(fd, 0);
	for (uint32_t k = 0; k < 25; k++) {
		uint8_t v[8];
		memset(v, 'a', sizeof(v));
		ASSERT_EQ(update(fd, &k, v), 0);
	}
	u::bpf_attr a{};
	a.elem.map_fd = static_cast<uint32_t>(fd);
	ASSERT_EQ(sys(u::MAP_FREEZE, a), 0);
	uint8_t digest[32];
	ASSERT_EQ(info_hash(fd, digest), 0);
	EXPECT_EQ(hex(digest, 32),
		  "c2a908d98f5df987ade41b5fce213067efbcc21ef2240212a41e54b5e7c28ae5");
	close(fd);
}

} // namespace

// ---- a scribbled array -------------------------------------------------------------------

namespace {

constexpr uint32_t PERCPU_ARRAY = 6;

// Every command on a 3-element array of 8-byte values whose element 1 holds 11 (in every
// CPU slot): the answers of a sound map, whatever the region's header says. The number of
// answers that differ.
int every_array_command(int fd, bool percpu)
{
	int failed = 0;
	const uint32_t ncpu = percpu ? bpfmap_num_possible_cpus() : 1;
	std::vector<uint64_t> v(ncpu, 0);
	uint32_t k = 1, n = 0;
	failed += expect_one_of(lookup(fd, &k, v.data()), {0}, "lookup of element 1");
	for (uint64_t x : v)
		failed += expect_one_of(static_cast<long>(x), {11}, "its value");
	k = 3;
	failed += expect_one_of(lookup(fd, &k, v.data()), {-ENOENT}, "lookup past the end");
	failed += expect_one_of(update(fd, &k, v.data()), {-E2BIG}, "update past the end");
	k = 2;
	std::fill(v.begin(), v.end(), 22);
	failed += expect_one_of(update(fd, &k, v.data()), {0}, "update of element 2");
	failed += expect_one_of(next_key(fd, &k, &n), {-ENOENT}, "key after the last");
	k = 0xfffffff0u;
	failed += expect_one_of(next_key(fd, &k, &n), {0}, "key after one past the end");
	failed += expect_one_of(n, {0}, "is the first");
	failed += expect_one_of(lookup_batch(fd, 4, 8 * ncpu, 3), {0, -ENOENT}, "lookup batch");
	for (uint32_t cursor : {2u, 3u, 1000u, 0xffffffffu}) {
		std::vector<uint32_t> keys(3);
		std::vector<uint64_t> values(3 * ncpu);
		uint32_t out = 0;
		u::bpf_attr a{};
		a.batch.in_batch = ptr(&cursor);
		a.batch.out_batch = ptr(&out);
		a.batch.keys = ptr(keys.data());
		a.batch.values = ptr(values.data());
		a.batch.count = 3;
		a.batch.map_fd = static_cast<uint32_t>(fd);
		failed += expect_one_of(sys(u::MAP_LOOKUP_BATCH, a), {0, -ENOENT},
					"lookup batch from a cursor");
		failed += expect_one_of(a.batch.count, {0, 1, 2, 3}, "its count");
	}
	bpfmap_map *h = bpfmap_map_get(fd);
	k = 1;
	auto *p = static_cast<uint64_t *>(bpfmap_map_lookup_elem(h, &k));
	failed += expect_one_of(p ? static_cast<long>(*p) : -1, {11}, "program-side lookup");
	if (percpu) {
		p = static_cast<uint64_t *>(bpfmap_map_lookup_percpu_elem(h, &k, ncpu - 1));
		failed +=
			expect_one_of(p ? static_cast<long>(*p) : -1, {11}, "the last CPU's value");
	}
	k = 3;
	failed += expect_one_of(bpfmap_map_lookup_elem(h, &k) != nullptr, {0},
				"program-side lookup past the end");
	uint64_t one = 33;
	failed += expect_one_of(bpfmap_map_update_elem(h, &k, &one, 0), {-E2BIG},
				"program-side update past the end");
	bpfmap_map_put(h);
	return failed;
}

} // namespace

// The header is read once, at attach, into the handle: sizes, counts and the number of
// CPU slots scribbled on afterwards change no answer and move no index.
TEST(Array, HeaderScribbledAfterAttachChangesNothing)
{
	for (uint32_t type : {uint32_t{u::MAP_TYPE_ARRAY}, PERCPU_ARRAY}) {
		bool percpu = type == PERCPU_ARRAY;
		SCOPED_TRACE(percpu ? "percpu" : "array");
		int fd = map_create(type, 4, 8, 3, percpu ? 0u : uint32_t{u::BPF_F_MMAPABLE});
		ASSERT_GE(fd, 0);
		std::vector<uint64_t> v(percpu ? bpfmap_num_possible_cpus() : 1, 11);
		uint32_t k = 1;
		ASSERT_EQ(update(fd, &k, v.data()), 0);
		off_t hdr = region_file_size(fd) - REGION_HEADER_PAGE;
		using bpfmap::map_header;
		for (size_t field :
		     {offsetof(map_header, key_size), offsetof(map_header, value_size),
		      offsetof(map_header, max_entries), offsetof(map_header, map_flags),
		      offsetof(map_header, nr_cpus)})
			poke<uint32_t>(fd, hdr + static_cast<off_t>(field), 0xffffffffu);
		poke<uint64_t>(fd, hdr + static_cast<off_t>(offsetof(map_header, data_size)),
			       ~0ull);
		for (off_t off = REGION_CTL_OFFSET; off < REGION_HEADER_PAGE; off += 8)
			poke<uint64_t>(fd, hdr + off, ~0ull);
		EXPECT_TRUE(in_child([&] { return every_array_command(fd, percpu); }));
		close(fd);
	}
}

// A per-CPU slot's sequence count scribbled odd, as if a writer were always mid-write:
// readers try a bounded number of times, then take the stripe's lock and read; the next
// write leaves the count even.
TEST(Array, PercpuOddSequenceCountsDoNotStallReaders)
{
	// percpu array of 3 8-byte values: per CPU slot an area of round_up(3 x 16, 64) bytes,
	// each element [u32 seq][pad][value].
	constexpr off_t AREA = 64, SLOT = 16;
	const uint32_t ncpu = bpfmap_num_possible_cpus();
	int fd = map_create(PERCPU_ARRAY, 4, 8, 3);
	ASSERT_GE(fd, 0);
	std::vector<uint64_t> v(ncpu, 11);
	uint32_t k = 1;
	ASSERT_EQ(update(fd, &k, v.data()), 0);
	for (uint32_t cpu = 0; cpu < ncpu; cpu++) {
		ASSERT_EQ(peek<uint64_t>(fd, cpu * AREA + 1 * SLOT + 8), 11u) << "layout";
		for (uint32_t i = 0; i < 3; i++)
			poke<uint32_t>(fd, cpu * AREA + i * SLOT, 0xffffffffu);
	}
	EXPECT_TRUE(in_child([&] { return every_array_command(fd, true); }, 30));
	ASSERT_EQ(update(fd, &k, v.data()), 0);
	for (uint32_t cpu = 0; cpu < ncpu; cpu++)
		EXPECT_EQ(peek<uint32_t>(fd, cpu * AREA + 1 * SLOT) & 1, 0u) << "cpu " << cpu;
	close(fd);
}
