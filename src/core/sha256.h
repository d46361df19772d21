// SHA-256 (FIPS 180-4), for bpf_map_info.hash: the digest 6.18 reports for a frozen array.
#pragma once

#include <cstddef>
#include <cstdint>

namespace bpfmap {

inline constexpr size_t SHA256_DIGEST_SIZE = 32;

void sha256(const void *data, size_t len, uint8_t digest[SHA256_DIGEST_SIZE]);

} // namespace bpfmap
