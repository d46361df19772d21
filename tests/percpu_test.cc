// Per-CPU maps: what the program-side ABI does to the caller's CPU value, what syscall
// commands see, updates from threads that share one CPU, forked processes that share the
// maps, and writers killed in the middle of a per-CPU update.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <random>
#include <sched.h>
#include <sys/wait.h>
#include <thread>
#include <vector>

#include "bpfmap/map.hpp"
#include "cpu_util.h"
#include "test_util.h"
#include "uapi618.h"

using namespace bpfmap::test;

namespace {

const uint32_t percpu_types[] = {u::MAP_TYPE_PERCPU_HASH, u::MAP_TYPE_PERCPU_ARRAY};

using uapi618::map_type_name;

uint32_t ncpus() { return bpfmap_num_possible_cpus(); }

using cpu_util::cpu_slot;
using cpu_util::nr_cpu_ids;

size_t slot_size(uint32_t value_size) { return (value_size + 7) / 8 * 8; }

// The CPU numbers this process may run on.
std::vector<uint32_t> usable_cpus()
{
	cpu_set_t set;
	std::vector<uint32_t> v;
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		for (uint32_t c = 0; c < nr_cpu_ids() && c < CPU_SETSIZE; c++)
			if (CPU_ISSET(c, &set) && cpu_slot(c) >= 0)
				v.push_back(c);
	return v;
}

struct map_handle {
	int fd = -1;
	bpfmap_map *m = nullptr;
	map_handle(uint32_t type, uint32_t ks, uint32_t vs, uint32_t max)
	{
		fd = map_create(type, ks, vs, max);
		if (fd >= 0)
			m = bpfmap_map_get(fd);
	}
	~map_handle()
	{
		if (m)
			bpfmap_map_put(m);
		if (fd >= 0)
			close(fd);
	}
};

TEST(Percpu, ValueLayoutIsOneSlotPerPossibleCpu)
{
	ASSERT_GE(ncpus(), 1u);
	for (uint32_t type : percpu_types) {
		map_handle h(type, 4, 5, 4);
		ASSERT_GE(h.fd, 0) << map_type_name(type);
		uint32_t key = 1;
		std::vector<uint8_t> in(slot_size(5) * ncpus()), out(in.size() + 8, 0xee);
		for (size_t i = 0; i < in.size(); i++)
			in[i] = static_cast<uint8_t>(i * 7 + 1); // padding bytes too
		ASSERT_EQ(update(h.fd, &key, in.data()), 0);
		ASSERT_EQ(lookup(h.fd, &key, out.data()), 0);
		EXPECT_TRUE(std::equal(in.begin(), in.end(), out.begin())) << map_type_name(type);
		EXPECT_EQ(out[in.size()], 0xee) << "wrote past the per-CPU value";
		// The program side sees each CPU's slot.
		for (uint32_t cpu = 0; cpu < nr_cpu_ids(); cpu++) {
			int slot = cpu_slot(cpu);
			auto *p = static_cast<uint8_t *>(
				bpfmap_map_lookup_percpu_elem(h.m, &key, cpu));
			if (slot < 0) {
				EXPECT_EQ(p, nullptr);
				continue;
			}
			ASSERT_NE(p, nullptr);
			EXPECT_EQ(memcmp(p, in.data() + slot * slot_size(5), 5), 0);
		}
		EXPECT_EQ(bpfmap_map_lookup_percpu_elem(h.m, &key, nr_cpu_ids()), nullptr);
		uint32_t absent = 77;
		EXPECT_EQ(bpfmap_map_lookup_percpu_elem(h.m, &absent, 0), nullptr);
	}
	map_handle plain(u::MAP_TYPE_HASH, 4, 8, 4);
	uint32_t key = 1;
	uint64_t v = 3;
	ASSERT_EQ(update(plain.fd, &key, &v), 0);
	EXPECT_EQ(bpfmap_map_lookup_percpu_elem(plain.m, &key, 0), nullptr) << "not a per-CPU map";
}

// A program-side update writes the value of the CPU it runs on, value_size bytes; a new
// hash key gets zeros everywhere else, even in an element that held another key before.
TEST(Percpu, ProgramUpdateWritesTheCallersCpu)
{
	std::vector<uint32_t> cpus = usable_cpus();
	ASSERT_FALSE(cpus.empty());
	for (uint32_t type : percpu_types) {
		const uint32_t vs = 12;
		const size_t ss = slot_size(vs);
		map_handle h(type, 4, vs, 2);
		ASSERT_GE(h.fd, 0);
		uint32_t key = 1;
		// Leave junk behind in every slot (and, for the hash, in the freed element).
		std::vector<uint8_t> junk(ss * ncpus(), 0xff), out(ss * ncpus());
		ASSERT_EQ(update(h.fd, &key, junk.data()), 0);
		if (type == u::MAP_TYPE_PERCPU_HASH) {
			ASSERT_EQ(del(h.fd, &key), 0);
		}
		for (uint32_t cpu : cpus) {
			uint8_t val[vs];
			memset(val, static_cast<int>(0x10 + cpu), vs);
			long err = 1;
			void *mine = nullptr;
			ASSERT_TRUE(cpu_util::run_on_cpu(cpu, [&] {
				err = bpfmap_map_update_elem(h.m, &key, val, 0);
				mine = bpfmap_map_lookup_elem(h.m, &key);
			}));
			ASSERT_EQ(err, 0);
			EXPECT_EQ(mine, bpfmap_map_lookup_percpu_elem(h.m, &key, cpu));
			ASSERT_EQ(lookup(h.fd, &key, out.data()), 0);
			size_t at = cpu_slot(cpu) * ss;
			EXPECT_TRUE(std::all_of(out.begin() + at, out.begin() + at + vs,
						[&](uint8_t b) { return b == 0x10 + cpu; }));
			// Padding: untouched by a program-side update, so 0xff from the syscall
			// update (for the hash: the freed element is the one taken back, and a new
			// key keeps its predecessor's padding, as in the kernel).
			for (size_t i = vs; i < ss; i++)
				EXPECT_EQ(out[at + i], 0xff)
					<< map_type_name(type) << " padding byte " << i;
		}
		// Slots of CPUs nobody wrote: junk stays in the array; a new hash key has zero
		// values there (padding as its predecessor left it).
		std::vector<bool> written(ncpus(), false);
		for (uint32_t cpu : cpus)
			written[cpu_slot(cpu)] = true;
		for (uint32_t s = 0; s < ncpus(); s++) {
			if (written[s])
				continue;
			for (size_t i = 0; i < ss; i++)
				EXPECT_EQ(out[s * ss + i],
					  type == u::MAP_TYPE_PERCPU_ARRAY || i >= vs ? 0xff : 0);
		}
		if (type == u::MAP_TYPE_PERCPU_HASH) {
			// The first program-side update created the key: every other slot was zeroed.
			uint32_t key2 = 2;
			uint8_t val[vs];
			memset(val, 0x42, vs);
			ASSERT_TRUE(cpu_util::run_on_cpu(
				cpus[0], [&] { bpfmap_map_update_elem(h.m, &key2, val, 0); }));
			ASSERT_EQ(lookup(h.fd, &key2, out.data()), 0);
			for (uint32_t s = 0; s < ncpus(); s++) {
				if (s == static_cast<uint32_t>(cpu_slot(cpus[0])))
					continue;
				EXPECT_TRUE(std::all_of(out.begin() + s * ss,
							out.begin() + (s + 1) * ss,
							[](uint8_t b) { return b == 0; }));
			}
		}
	}
}

// Threads that share one CPU update the same key from both ABIs while syscall readers
// copy it: every CPU value a reader sees was written whole by one update.
TEST(Percpu, UpdatesFromThreadsSharingACpuNeverInterleave)
{
	std::vector<uint32_t> cpus = usable_cpus();
	ASSERT_FALSE(cpus.empty());
	const uint32_t vs = 512; // slow copies: preemption lands inside them
	const size_t ss = slot_size(vs);
	for (uint32_t type : percpu_types) {
		map_handle h(type, 4, vs, 4);
		ASSERT_GE(h.fd, 0);
		uint32_t key = 3;
		std::vector<uint8_t> init(ss * ncpus(), 0);
		ASSERT_EQ(update(h.fd, &key, init.data()), 0);
		std::atomic<bool> stop{false};
		std::atomic<long> reads{0}, torn{0}, failed{0};
		// Writers run their rounds, and on until the readers have read enough, so a
		// loaded machine that starts the readers late still tests something.
		const long min_reads = 2000;
		const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
		auto more = [&](int i, int rounds) {
			return i < rounds || (reads.load(std::memory_order_relaxed) < min_reads &&
					      std::chrono::steady_clock::now() < deadline);
		};
		std::vector<std::thread> readers;
		for (int r = 0; r < 2; r++)
			readers.emplace_back([&] {
				std::vector<uint8_t> out(ss * ncpus());
				while (!stop.load(std::memory_order_relaxed)) {
					if (lookup(h.fd, &key, out.data()) != 0) {
						torn++;
						continue;
					}
					reads++;
					for (uint32_t s = 0; s < ncpus(); s++) {
						const uint8_t *p = out.data() + s * ss;
						if (!std::all_of(p, p + vs, [&](uint8_t b) {
							    return b == p[0];
						    }))
							torn++;
					}
				}
			});
		std::vector<std::thread> writers;
		// Four program-side writers crowd onto one CPU, and a fifth writes all CPUs.
		for (int t = 0; t < 4; t++)
			writers.emplace_back([&, t] {
				cpu_set_t set;
				CPU_ZERO(&set);
				CPU_SET(cpus[0], &set);
				sched_setaffinity(0, sizeof(set), &set);
				std::vector<uint8_t> v(vs);
				for (int i = 0; more(i, 4000 * SCALE); i++) {
					memset(v.data(), (t << 6) | (i & 63), vs);
					if (bpfmap_map_update_elem(h.m, &key, v.data(), 0) != 0)
						failed++;
				}
			});
		writers.emplace_back([&] {
			std::vector<uint8_t> v(ss * ncpus());
			for (int i = 0; more(i, 1000 * SCALE); i++) {
				for (uint32_t s = 0; s < ncpus(); s++)
					memset(v.data() + s * ss,
					       static_cast<int>(0x80 | (i & 0x3f)), ss);
				if (update(h.fd, &key, v.data()) != 0)
					failed++;
			}
		});
		for (auto &t : writers)
			t.join();
		stop = true;
		for (auto &t : readers)
			t.join();
		EXPECT_EQ(torn.load(), 0) << map_type_name(type) << ": torn or missing values in "
					  << reads.load() << " reads";
		EXPECT_EQ(failed.load(), 0);
		EXPECT_GE(reads.load(), min_reads)
			<< "the readers never got to run alongside the writers";
	}
}

// The multi-process check: 100 forked children each update their own keys of one
// per-CPU hash and one hash through the parent's fds; the parent sees every update.
TEST(Percpu, HundredForkedChildrenUpdateThroughTheParentsFds)
{
	const int children = 100;
	const uint32_t per_child = 8, vs = 8;
	int pfd = map_create(u::MAP_TYPE_PERCPU_HASH, 4, vs, children * per_child);
	int hfd = map_create(u::MAP_TYPE_HASH, 4, vs, children * per_child);
	ASSERT_GE(pfd, 0);
	ASSERT_GE(hfd, 0);
	auto expect = [&](uint32_t k, uint32_t slot) { return uint64_t{k} << 16 | slot; };
	std::vector<pid_t> pids;
	for (int c = 0; c < children; c++) {
		pid_t pid = fork();
		if (pid == 0) {
			bpfmap_map *m = bpfmap_map_get(pfd);
			if (!m)
				_exit(2);
			// Stay on one CPU, so the lookup and the update below see the same value.
			std::vector<uint32_t> cpus = usable_cpus();
			cpu_set_t set;
			CPU_ZERO(&set);
			CPU_SET(cpus[c % cpus.size()], &set);
			if (sched_setaffinity(0, sizeof(set), &set) != 0)
				_exit(4);
			std::vector<uint64_t> v(ncpus());
			for (uint32_t i = 0; i < per_child; i++) {
				uint32_t k = c * per_child + i;
				for (uint32_t s = 0; s < ncpus(); s++)
					v[s] = expect(k, s);
				uint64_t hv = k ^ 0x5a5a;
				if (update(pfd, &k, v.data()) != 0 || update(hfd, &k, &hv) != 0)
					_exit(1);
				// And once through the program side: this CPU's value, then put back.
				auto *mine = static_cast<uint64_t *>(bpfmap_map_lookup_elem(m, &k));
				uint64_t was = mine ? *mine : 0;
				uint64_t marker = ~was;
				if (!mine ||
				    bpfmap_map_update_elem(m, &k, &marker, u::BPF_EXIST) != 0 ||
				    *mine != marker)
					_exit(3);
				*mine = was;
			}
			bpfmap_map_put(m);
			_exit(0);
		}
		ASSERT_GT(pid, 0);
		pids.push_back(pid);
	}
	for (pid_t pid : pids) {
		int status;
		ASSERT_EQ(waitpid(pid, &status, 0), pid);
		ASSERT_TRUE(WIFEXITED(status)) << "child died";
		ASSERT_EQ(WEXITSTATUS(status), 0) << "child failed";
	}
	std::vector<uint64_t> out(ncpus());
	for (uint32_t k = 0; k < children * per_child; k++) {
		ASSERT_EQ(lookup(pfd, &k, out.data()), 0) << "per-CPU key " << k;
		for (uint32_t s = 0; s < ncpus(); s++)
			ASSERT_EQ(out[s], expect(k, s)) << "key " << k << " slot " << s;
		uint64_t hv;
		ASSERT_EQ(lookup(hfd, &k, &hv), 0) << "hash key " << k;
		ASSERT_EQ(hv, k ^ 0x5a5a);
	}
	close(pfd);
	close(hfd);
}

// Writers SIGKILLed in the middle of per-CPU updates never wedge readers or writers: the
// survivor reads and writes every key, and values written afterwards read back whole.
TEST(Percpu, KilledWritersNeverWedgeReadersOrWriters)
{
	const uint32_t max = 64, vs = 2048; // long copies: kills land inside them
	const size_t ss = slot_size(vs);
	for (uint32_t type : percpu_types) {
		int fd = map_create(type, 4, vs, max);
		ASSERT_GE(fd, 0);
		for (int round = 0; round < 8; round++) {
			pid_t pid = fork();
			if (pid == 0) {
				bpfmap_map *m = bpfmap_map_get(fd);
				std::vector<uint8_t> v(ss * ncpus());
				std::mt19937 rng(round);
				for (uint32_t i = 0;; i++) {
					uint32_t k = rng() % max;
					memset(v.data(), static_cast<int>(i), v.size());
					if (i & 1)
						update(fd, &k, v.data());
					else
						bpfmap_map_update_elem(m, &k, v.data(), 0);
				}
			}
			usleep(5000 + round * 2000);
			kill(pid, SIGKILL);
			waitpid(pid, nullptr, 0);
		}
		alarm(60); // a wedged lock or a reader spinning forever fails here
		std::vector<uint8_t> v(ss * ncpus()), out(v.size());
		for (uint32_t k = 0; k < max; k++) {
			long r = lookup(fd, &k, out.data());
			EXPECT_TRUE(r == 0 || r == -ENOENT) << r;
			memset(v.data(), static_cast<int>(k), v.size());
			ASSERT_EQ(update(fd, &k, v.data()), 0)
				<< map_type_name(type) << " key " << k;
			ASSERT_EQ(lookup(fd, &k, out.data()), 0);
			ASSERT_EQ(out, v) << map_type_name(type) << " key " << k;
		}
		alarm(0);
		close(fd);
	}
}

// The C++ interface sizes per-CPU values as the syscall layout does, and TypedMap (one V
// per value) refuses per-CPU maps rather than overrun a V.
TEST(Percpu, CppInterfaceUsesTheSyscallLayout)
{
	bpfmap::Map m;
	ASSERT_EQ(bpfmap::Map::create({bpfmap::MAP_PERCPU_HASH, 4, 4, 8, 0, "pc"}, m), 0);
	EXPECT_TRUE(m.percpu());
	EXPECT_EQ(m.value_size(), 4u);
	EXPECT_EQ(m.value_bytes(), 8 * ncpus());
	uint32_t key = 9;
	std::vector<std::byte> small(4), whole(m.value_bytes(), std::byte{7}), out(m.value_bytes());
	auto k = std::as_bytes(std::span(&key, 1));
	EXPECT_EQ(m.update(k, small), EINVAL);
	EXPECT_EQ(m.update(k, whole), 0);
	EXPECT_EQ(m.lookup(k, small), EINVAL);
	EXPECT_EQ(m.lookup(k, out), 0);
	EXPECT_EQ(out, whole);

	bpfmap::TypedMap<uint32_t, uint32_t> t;
	EXPECT_EQ((bpfmap::TypedMap<uint32_t, uint32_t>::create(bpfmap::MAP_PERCPU_ARRAY, 4, t)),
		  EINVAL);
	EXPECT_EQ((bpfmap::TypedMap<uint32_t, uint32_t>::open(std::move(m), t)), EINVAL);
}

} // namespace
