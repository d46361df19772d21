// BPF_MAP_TYPE_ARRAY: index rules, in-place values, and the mmap layout.
#include <gtest/gtest.h>

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
