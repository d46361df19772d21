// Ring buffer costs, for 8-, 64- and 512-byte records:
//   produce/<size>      one reserve + submit (program-side ABI), ns per record; the ring is
//                       drained, untimed, whenever it fills.
//   output/<size>       one bpfmap_ringbuf_output (copy in one call), ns per record.
//   consume/<size>      RingConsumer::consume() over a ring filled with 4096 records (fill
//                       untimed), ns per record (the items_per_second counter, inverted).
//   end_to_end/<size>   a producer thread on CPU 0 and a consumer thread on CPU 1 (sleeping
//                       in poll() when it has caught up), 1,000,000 records, records/s.
//   kernel_produce/<size>  the kernel's own reserve + submit, from inside a BPF program: an
//                       XDP program that reserves and submits 1000 records in a loop, run by
//                       BPF_PROG_TEST_RUN; ns per record. Needs root (skips otherwise).
// libbpf's consume costs about 7 ns per 8-byte record here (issue 7).
#include <benchmark/benchmark.h>

#include <linux/bpf.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "bpfmap/bpfmap.h"
#include "bpfmap/map.hpp"
#include "bpfmap/ringbuf.hpp"
#include "kernel_prog.h"

namespace {

constexpr uint32_t RING_SIZE = 16u << 20;

int ring_create(bpfmap::Map &map)
{
	bpfmap::MapSpec spec;
	spec.type = bpfmap::MAP_RINGBUF;
	spec.max_entries = RING_SIZE;
	return bpfmap::Map::create(spec, map) ? -1 : map.fd();
}

struct bench_ring {
	bpfmap::Map map;
	int fd = ring_create(map);
	bpfmap_map *m = fd >= 0 ? bpfmap_map_get(fd) : nullptr;
	bpfmap::RingConsumer cons;
	uint64_t sink = 0;

	bench_ring()
	{
		if (m)
			bpfmap::RingConsumer::open(
				fd,
				[this](const void *d, size_t n) {
					sink += n + *static_cast<const unsigned char *>(d);
					return 0;
				},
				cons);
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
	state.counters["ns_per_record"] =
		benchmark::Counter(static_cast<double>(records),
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
			state.counters["records_per_poll"] =
				static_cast<double>(seen) / static_cast<double>(calls);
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

// ---- the kernel, in-program -----------------------------------------------------------

using kernel_prog::insn;
using kernel_prog::kernel_bpf;

constexpr int KERNEL_LOOP = 1000;

// for (i = 0; i < KERNEL_LOOP; i++) { p = bpf_ringbuf_reserve(rb, size, 0); if (p)
// bpf_ringbuf_submit(p, 0); } return XDP_PASS;
int load_produce_prog(int map_fd, int size, std::string *why)
{
	std::vector<bpf_insn> p = {
		insn(BPF_ALU64 | BPF_MOV | BPF_K, 6, 0, 0, 0),			  // r6 = 0
		insn(BPF_LD | BPF_DW | BPF_IMM, 1, BPF_PSEUDO_MAP_FD, 0, map_fd), // r1 = map
		insn(0, 0, 0, 0, 0),						  // (second half)
		insn(BPF_ALU64 | BPF_MOV | BPF_K, 2, 0, 0, size),		  // r2 = size
		insn(BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, 0),			  // r3 = 0
		insn(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_ringbuf_reserve),
		insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 3, 0),   // if !r0 skip
		insn(BPF_ALU64 | BPF_MOV | BPF_X, 1, 0, 0, 0), // r1 = r0
		insn(BPF_ALU64 | BPF_MOV | BPF_K, 2, 0, 0, 0), // r2 = 0
		insn(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_ringbuf_submit),
		insn(BPF_ALU64 | BPF_ADD | BPF_K, 6, 0, 0, 1),		 // r6++
		insn(BPF_JMP | BPF_JLT | BPF_K, 6, 0, -11, KERNEL_LOOP), // loop
		insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, XDP_PASS),
		insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
	};
	return kernel_prog::load_prog(p, why);
}

void kernel_produce(benchmark::State &state)
{
	const int size = static_cast<int>(state.range(0));
	const uint32_t ring = RING_SIZE; // as the bpfmap rows
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_type = BPF_MAP_TYPE_RINGBUF;
	a.max_entries = ring;
	int map = static_cast<int>(kernel_bpf(BPF_MAP_CREATE, &a));
	if (map < 0) {
		state.SkipWithError(
			(std::string("kernel ring buffer: ") + strerror(errno)).c_str());
		return;
	}
	std::string why;
	int prog = load_produce_prog(map, size, &why);
	if (prog < 0) {
		close(map);
		state.SkipWithError(why.c_str());
		return;
	}
	long page = sysconf(_SC_PAGESIZE);
	auto *cons = static_cast<uint64_t *>(
		mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_SHARED, map, 0));
	auto *prod = static_cast<uint64_t *>(mmap(nullptr, page, PROT_READ, MAP_SHARED, map, page));
	const uint64_t record = (static_cast<uint64_t>(size) + 8 + 7) / 8 * 8;
	const uint32_t repeat = static_cast<uint32_t>(ring / 2 / (record * KERNEL_LOOP));
	double ns = 0;
	uint64_t records = 0;
	bool ok = cons != MAP_FAILED && prod != MAP_FAILED;
	for (auto _ : state) {
		if (!ok)
			break;
		__atomic_store_n(cons, __atomic_load_n(prod, __ATOMIC_ACQUIRE),
				 __ATOMIC_RELEASE); // drain
		uint64_t before = __atomic_load_n(prod, __ATOMIC_ACQUIRE);
		double run = kernel_prog::run_ns(prog, repeat);
		if (run < 0) {
			ok = false;
			break;
		}
		records += (__atomic_load_n(prod, __ATOMIC_ACQUIRE) - before) / record;
		ns += run * repeat;
		state.SetIterationTime(run * repeat * 1e-9);
	}
	if (!ok)
		state.SkipWithError("BPF_PROG_TEST_RUN failed or the ring could not be mapped");
	else if (records)
		state.counters["ns_per_record"] = ns / static_cast<double>(records);
	close(prog);
	close(map);
}

} // namespace

BENCHMARK(kernel_produce)->Arg(8)->Arg(64)->Arg(512)->UseManualTime()->Iterations(20);
BENCHMARK(produce)->Arg(8)->Arg(64)->Arg(512);
BENCHMARK(output)->Arg(8)->Arg(64)->Arg(512);
BENCHMARK(consume)->Arg(8)->Arg(64)->Arg(512);
BENCHMARK(end_to_end)
	->Arg(8)
	->Arg(64)
	->Arg(512)
	->Unit(benchmark::kMillisecond)
	->UseRealTime()
	->Iterations(3);

BENCHMARK_MAIN();
