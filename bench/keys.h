// Keys the benchmarks share how to make.
#pragma once

#include <cstdint>

namespace bench_keys {

// A bijection on 32-bit integers (murmur3's finaliser): distinct, random-looking keys.
inline uint32_t mix32(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x85ebca6bu;
	x ^= x >> 13;
	x *= 0xc2b2ae35u;
	x ^= x >> 16;
	return x;
}

} // namespace bench_keys
