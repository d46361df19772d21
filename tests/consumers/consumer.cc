// The C++ interface from an installed bpfmap (tests/install_test.sh): bpfmap::TypedMap, which
// needs the C++20 the package asks for. Exits 0 when a written value reads back.
#include <cstdint>
#include <cstdio>
#include <cstring>

#include <bpfmap/map.hpp>

int main()
{
	bpfmap::TypedMap<uint32_t, uint64_t> counts;
	if (int err = bpfmap::TypedMap<uint32_t, uint64_t>::create(bpfmap::MAP_HASH, 16, counts)) {
		fprintf(stderr, "consumer_cxx: create: %s\n", strerror(err));
		return 1;
	}
	if (int err = counts.update(7, 42)) {
		fprintf(stderr, "consumer_cxx: update: %s\n", strerror(err));
		return 1;
	}
	const uint64_t *v = counts.lookup_ptr(7);
	if (!v || *v != 42) {
		fprintf(stderr, "consumer_cxx: key 7 does not read back as 42\n");
		return 1;
	}
	printf("consumer_cxx: key 7 -> %llu\n", static_cast<unsigned long long>(*v));
	return 0;
}
