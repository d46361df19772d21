// LPM_TRIE against a model: random inserts, replacements and deletes of prefixes that nest
// and overlap (short ones included, down to /0), and after every step lookups of random
// keys, through both the copy-out and the pointer lookup, compared with the longest stored
// prefix the model finds by brute force. Run for key lengths where the jump table covers
// the whole key (1 and 2 bytes) and where it covers part of it (IPv4, IPv6), and map sizes
// that give it different widths. The order of get_next_key is compared with the kernel's
// in kernel_diff_test.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "test_util.h"

using namespace bpfmap::test;

namespace {

struct prefix {
	uint32_t len;
	std::vector<uint8_t> data; // bits past len are zero

	bool operator<(const prefix &o) const // data are all one size
	{
		return len != o.len ? len < o.len : memcmp(data.data(), o.data.data(), data.size()) < 0;
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
		auto it = m.find({static_cast<uint32_t>(l), masked(data, static_cast<uint32_t>(l))});
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
	int fd = map_create(11 /* LPM_TRIE */, 4 + c.data_size, 8, c.max_entries, 1 /* NO_PREALLOC */);
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
			auto *ptr = static_cast<const uint64_t *>(bpfmap_map_lookup_elem(h, pk.data()));
			bool ok = want ? r == 0 && v == *want && ptr && *ptr == *want : r == -ENOENT && !ptr;
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
