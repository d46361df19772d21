// Key hashing for the hash family: xxHash's XXH3 with a per-map seed.
#pragma once

#include <cstddef>
#include <cstdint>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace bpfmap {

inline uint64_t hash_key(const void *key, size_t len, uint64_t seed)
{
	return XXH3_64bits_withSeed(key, len, seed);
}

} // namespace bpfmap
