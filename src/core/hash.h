// Key hashing for the hash family: xxHash's XXH3 with a per-map seed. And the kernel's
// jhash (Bob Jenkins' lookup3), where a map must set the very bits the kernel's sets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace bpfmap {

inline uint64_t hash_key(const void *key, size_t len, uint64_t seed)
{
	return XXH3_64bits_withSeed(key, len, seed);
}

namespace jhash_detail {

constexpr uint32_t INITVAL = 0xdeadbeef;

inline uint32_t rol32(uint32_t v, int s) { return (v << s) | (v >> (32 - s)); }

// The jhash rounds read as rows of three: kept out of clang-format.
// clang-format off
inline void mix(uint32_t &a, uint32_t &b, uint32_t &c)
{
	a -= c; a ^= rol32(c, 4); c += b;
	b -= a; b ^= rol32(a, 6); a += c;
	c -= b; c ^= rol32(b, 8); b += a;
	a -= c; a ^= rol32(c, 16); c += b;
	b -= a; b ^= rol32(a, 19); a += c;
	c -= b; c ^= rol32(b, 4); b += a;
}

inline void final(uint32_t &a, uint32_t &b, uint32_t &c)
{
	c ^= b; c -= rol32(b, 14);
	a ^= c; a -= rol32(c, 11);
	b ^= a; b -= rol32(a, 25);
	c ^= b; c -= rol32(b, 16);
	a ^= c; a -= rol32(c, 4);
	b ^= a; b -= rol32(a, 14);
	c ^= b; c -= rol32(b, 24);
}
// clang-format on

inline uint32_t load32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

// Add the next 12 bytes (little-endian words) to a, b and c.
inline void add12(uint32_t &a, uint32_t &b, uint32_t &c, const uint8_t *k)
{
	a += load32(k);
	b += load32(k + 4);
	c += load32(k + 8);
}

// The last 1 to 12 bytes, zero-padded, then the final mix.
inline uint32_t finish(uint32_t a, uint32_t b, uint32_t c, const uint8_t *k, uint32_t n)
{
	uint8_t tail[12] = {};
	memcpy(tail, k, n);
	add12(a, b, c, tail);
	final(a, b, c);
	return c;
}

// Both hashes: whole 12-byte blocks while more than 12 bytes are left, then the tail.
inline uint32_t jhash_bytes(const uint8_t *k, uint32_t len, uint32_t start)
{
	uint32_t a = start, b = start, c = start;
	for (; len > 12; len -= 12, k += 12) {
		add12(a, b, c, k);
		mix(a, b, c);
	}
	return len ? finish(a, b, c, k, len) : c;
}

} // namespace jhash_detail

// The kernel's jhash(): len bytes.
inline uint32_t jhash(const void *key, uint32_t len, uint32_t initval)
{
	using namespace jhash_detail;
	return jhash_bytes(static_cast<const uint8_t *>(key), len, INITVAL + len + initval);
}

// The kernel's jhash2(): n 32-bit words (the same blocks, a different start value).
inline uint32_t jhash2(const void *key, uint32_t n, uint32_t initval)
{
	using namespace jhash_detail;
	return jhash_bytes(static_cast<const uint8_t *>(key), n * 4, INITVAL + (n << 2) + initval);
}

} // namespace bpfmap
