// Hex dumps of bytes, for test failure messages and digest checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bpfmap::test {

// The first max bytes in lowercase hex, then "..." if there were more.
inline std::string hex(const uint8_t *p, size_t n, size_t max = 48)
{
	static const char *d = "0123456789abcdef";
	std::string s;
	for (size_t i = 0; i < n && i < max; i++) {
		s += d[p[i] >> 4];
		s += d[p[i] & 15];
	}
	if (n > max)
		s += "...";
	return s;
}

inline std::string hex(const std::vector<uint8_t> &v, size_t max = 48)
{
	return hex(v.data(), v.size(), max);
}

} // namespace bpfmap::test
