// BPF_MAP_TYPE_ARRAY: index rules, in-place values, and the mmap layout.
#include <gtest/gtest.h>

#include <string>
#include <sys/mman.h>

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

std::string hex(const uint8_t *d, size_t n)
{
	std::string s;
	char b[3];
	for (size_t i = 0; i < n; i++) {
		snprintf(b, sizeof(b), "%02x", d[i]);
		s += b;
	}
	return s;
}

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
	EXPECT_EQ(hex(digest, 32), "31dd8bde7082c8b439f17b0c8a141465637f9bc9c3f1e5f944692d4dac905467");
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
	EXPECT_EQ(hex(digest, 32), "c2a908d98f5df987ade41b5fce213067efbcc21ef2240212a41e54b5e7c28ae5");
	close(fd);
}

} // namespace
