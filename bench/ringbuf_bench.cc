// Ring buffer costs, for 8-, 64- and 512-byte records:
//   produce/<size>      one reserve + submit (program-side ABI), ns per record; the ring is
//                       drained, untimed, whenever it fills.
//   output/<size>       one bpfmap_ringbuf_output (copy in one call), ns per record.
//   consume/<size>      RingConsumer::consume() over a ring filled with 4096 records (fill
//                       untimed), ns per record (the items_per_second counter, inverted).
//   end_to_end/<size>   a producer thread on CPU 0 and a consumer thread on CPU 1 (sleeping
//                       in poll() when it has caught up), 1,000,000 records, records/s.
// The kernel's own costs on these machines, from issue 7: in-program reserve+submit about
// 22 ns, libbpf's consume about 7 ns per 8-byte record.
#include <benchmark/benchmark.h>

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "bpfmap/bpfmap.h"
#include "bpfmap/map.hpp"
#include "bpfmap/ringbuf.hpp"

namespace {

constexpr uint32_t RING_SIZE = 16u << 20;

struct bench_ring {
	bpfmap::Map map;
	int fd = bpfmap::Map::create({.type = bpfmap::MAP_RINGBUF, .max_entries = RING_SIZE}, map) ? -1 : map.fd();
	bpfmap_map *m = fd >= 0 ? bpfmap_map_get(fd) : nullptr;
	bpfmap::RingConsumer cons;
	uint64_t sink = 0;

	bench_ring()
	{
		if (m)
			bpfmap::RingConsumer::open(fd, [this](const void *d, size_t n) {
				sink += n + *static_cast<const unsigned char *>(d);
				return 0;
			}, cons);
	}
	~bench_ring() { bpfmap_map_put(m); }
	bool ok() const { return m && cons.fd() >= 0; }
};

void pin_to_cpu(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu % static_cast<int>(std::thread::hardware_concurrency()), &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

void produce(benchmark::State &state)
{
	bench_ring r;
	if (!r.ok()) {
		state.SkipWithError("ring create");
		return;
	}
	const size_t size = static_cast<size_t>(state.range(0));
	for (auto _ : state) {
		void *rec = bpfmap_ringbuf_reserve(r.m, size, 0);
		if (__builtin_expect(!rec, 0)) {
			state.PauseTiming();
			r.cons.consume();
			state.ResumeTiming();
			rec = bpfmap_ringbuf_reserve(r.m, size, 0);
		}
		*static_cast<uint64_t *>(rec) = size;
		bpfmap_ringbuf_submit(rec, 0);
	}
	state.SetItemsProcessed(state.iterations());
}

void output(benchmark::State &state)
{
	bench_ring r;
	if (!r.ok()) {
		state.SkipWithError("ring create");
		return;
	}
	const size_t size = static_cast<size_t>(state.range(0));
	std::vector<unsigned char> buf(size, 0x5a);
	for (auto _ : state) {
		if (__builtin_expect(bpfmap_ringbuf_output(r.m, buf.data(), size, 0) != 0, 0)) {
			state.PauseTiming();
			r.cons.consume();
			state.ResumeTiming();
			bpfmap_ringbuf_output(r.m, buf.data(), size, 0);
		}
	}
	state.SetItemsProcessed(state.iterations());
}

void consume(benchmark::State &state)
{
	bench_ring r;
	if (!r.ok()) {
		state.SkipWithError("ring create");
		return;
	}
	const size_t size = static_cast<size_t>(state.range(0));
	const int batch = 4096;
	std::vector<unsigned char> buf(size, 0x5a);
	long records = 0;
	for (auto _ : state) {
		state.PauseTiming();
		for (int i = 0; i < batch; i++)
			bpfmap_ringbuf_output(r.m, buf.data(), size, bpfmap::RB_NO_WAKEUP);
		state.ResumeTiming();
		records += r.cons.consume();
	}
	benchmark::DoNotOptimize(r.sink);
	state.SetItemsProcessed(records);
	state.counters["ns_per_record"] = benchmark::Counter(static_cast<double>(records),
		benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void end_to_end(benchmark::State &state)
{
	bench_ring r;
	if (!r.ok()) {
		state.SkipWithError("ring create");
		return;
	}
	const size_t size = static_cast<size_t>(state.range(0));
	const long total = 1000000;
	for (auto _ : state) {
		std::atomic<bool> done{false};
		long before = 0;
		std::thread consumer([&] {
			pin_to_cpu(1);
			long seen = 0, calls = 0;
			while (seen < total) {
				seen += std::max(0, r.cons.poll(100));
				calls++;
			}
			before = seen;
			state.counters["records_per_poll"] = static_cast<double>(seen) / static_cast<double>(calls);
			done = true;
		});
		std::thread producer([&] {
			pin_to_cpu(0);
			std::vector<unsigned char> buf(size, 0x5a);
			for (long i = 0; i < total; i++)
				while (bpfmap_ringbuf_output(r.m, buf.data(), size, 0) != 0)
					sched_yield();
		});
		producer.join();
		consumer.join();
		benchmark::DoNotOptimize(before);
	}
	state.SetItemsProcessed(state.iterations() * total);
}

} // namespace

BENCHMARK(produce)->Arg(8)->Arg(64)->Arg(512);
BENCHMARK(output)->Arg(8)->Arg(64)->Arg(512);
BENCHMARK(consume)->Arg(8)->Arg(64)->Arg(512);
BENCHMARK(end_to_end)->Arg(8)->Arg(64)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

BENCHMARK_MAIN();
