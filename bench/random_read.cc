// MEM/1GiB/random_read, a row of map_bench: what one independent random read from memory
// costs on this machine, the floor for lookups whose cache misses overlap (the multi rows).
//
// A 1 GiB buffer (far past the caches) and a shuffled list of all its 64-byte lines; each
// iteration loads 8 bytes from the next line on the list. The addresses come from the list,
// not from loaded data, so the CPU has as many loads in flight as it can: the time per
// iteration is memory throughput for random lines, not latency. The buffer is in 4 KiB pages
// (no transparent huge pages), as a map's shared region is, so the loads pay the same TLB
// misses a map lookup does.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <sys/mman.h>
#include <vector>

namespace {

constexpr size_t BUF_BYTES = size_t{1} << 30;
constexpr size_t LINE = 64;
constexpr uint32_t LOADS_PER_BATCH = 1024;

struct random_lines {
	char *buf = nullptr;
	std::vector<uint32_t> order; // line numbers, shuffled

	random_lines()
	{
		void *p = mmap(nullptr, BUF_BYTES, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			perror("mmap 1 GiB");
			abort();
		}
		madvise(p, BUF_BYTES, MADV_NOHUGEPAGE);
		buf = static_cast<char *>(p);
		memset(buf, 1, BUF_BYTES); // commit every page before timing
		order.resize(BUF_BYTES / LINE);
		for (uint32_t i = 0; i < order.size(); i++)
			order[i] = i;
		std::shuffle(order.begin(), order.end(), std::mt19937_64(0x72616e64));
	}
	~random_lines() { munmap(buf, BUF_BYTES); }
};

void random_read(benchmark::State &state)
{
	static std::unique_ptr<random_lines> lines = std::make_unique<random_lines>();
	const uint32_t *order = lines->order.data();
	const size_t n = lines->order.size();
	const char *buf = lines->buf;
	size_t i = 0;
	uint64_t sum = 0;
	while (state.KeepRunningBatch(LOADS_PER_BATCH)) {
		for (uint32_t j = 0; j < LOADS_PER_BATCH; j++) {
			uint64_t w;
			memcpy(&w, buf + size_t{order[i + j]} * LINE, 8);
			sum += w;
		}
		i += LOADS_PER_BATCH;
		if (i == n)
			i = 0;
	}
	benchmark::DoNotOptimize(sum);
	state.SetItemsProcessed(state.iterations());
}

[[maybe_unused]] const auto *registered =
	benchmark::RegisterBenchmark("MEM/1GiB/random_read", random_read)
		-> Unit(benchmark::kNanosecond) -> UseRealTime();

} // namespace
