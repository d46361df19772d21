// Concurrency invariants of LRU hash maps (part of stress_test): hot keys survive a map
// filled past capacity, writers killed mid-update never wedge the map, and every hit is the
// value of a successful update.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sys/mman.h>
#include <sys/wait.h>
#include <thread>
#include <vector>

#include "stress_util.h"
#include "test_util.h"

using namespace bpfmap::test;

namespace {

// ---- LRU ------------------------------------------------------------------------------

constexpr uint32_t LRU_HOT = 8;
// ThreadSanitizer cannot see an order that runs through another process's lock holds: the
// sanitizer builds run the threads only.
#if defined(__SANITIZE_THREAD__)
constexpr int LRU_CHILDREN = 0;
#else
constexpr int LRU_CHILDREN = 2;
#endif

// An LRU value: its key, who wrote it (writer << 32 | the writer's update number), a check
// word over both, and the key again. A value of another key, a torn one, or one that no
// update of the key wrote, does not pass lru_value_ok().
struct lru_value {
	uint64_t key, id, check, key_again;
};

lru_value lru_value_of(uint32_t key, uint64_t id)
{
	return {key, id, (key * 0x9e3779b97f4a7c15ull) ^ id ^ 0x5bd1e995ull, key};
}

bool lru_value_ok(const lru_value &v, uint32_t key)
{
	lru_value want = lru_value_of(key, v.id);
	return memcmp(&v, &want, sizeof(v)) == 0;
}

// What one LRU worker saw: values that were not whole values of the key looked up, and
// answers the kernel would not give.
struct lru_seen {
	long wrong = 0, bad_returns = 0;
	lru_seen &operator+=(const lru_seen &o)
	{
		wrong += o.wrong;
		bad_returns += o.bad_returns;
		return *this;
	}
};

// One worker of the LRU stress: inserts keys from a domain ten times the map's size (so
// nearly every insert evicts), copy-out lookups that check values, and program-side
// lookups of the hot keys (which set their reference bits) between updates. An LRU update
// without flags always succeeds: it evicts to make room. *stop ends it.
lru_seen lru_worker(int fd, uint32_t max, uint32_t seed, const std::atomic<bool> *stop, int rounds)
{
	bpfmap_map *h = bpfmap_map_get(fd);
	std::mt19937 rng(seed);
	lru_seen seen;
	for (int i = 0; (rounds < 0 || i < rounds) && !stop->load(std::memory_order_relaxed); i++) {
		for (uint32_t k = 0; k < LRU_HOT; k++)
			bpfmap_map_lookup_elem(h, &k);
		uint32_t k = LRU_HOT + rng() % (10 * max);
		lru_value v = lru_value_of(k, uint64_t{seed} << 32 | static_cast<uint32_t>(i));
		seen.bad_returns += update(fd, &k, &v) != 0;
		uint32_t q = LRU_HOT + rng() % (10 * max);
		lru_value out;
		long r = lookup(fd, &q, &out);
		seen.wrong += r == 0 && !lru_value_ok(out, q);
		seen.bad_returns += r != 0 && r != -ENOENT;
	}
	bpfmap_map_put(h);
	return seen;
}

// Threads and processes insert far past capacity while the hot keys are looked up: no
// crash, no wrong value, the hot keys survive, and the map never holds more than max.
TEST(Stress, LruPastCapacityKeepsHotKeysAndBounds)
{
	for (uint32_t flags : {0u, static_cast<uint32_t>(u::BPF_F_NO_COMMON_LRU)}) {
		const uint32_t max = 512;
		int fd = map_create(u::MAP_TYPE_LRU_HASH, 4, 32, max, flags);
		ASSERT_GE(fd, 0);
		for (uint32_t k = 0; k < LRU_HOT; k++) {
			lru_value v = lru_value_of(k, 0);
			ASSERT_EQ(update(fd, &k, &v), 0);
		}
		std::atomic<bool> stop{false};
		std::vector<pid_t> kids;
		for (int c = 0; c < LRU_CHILDREN; c++) {
			pid_t pid = fork();
			if (pid == 0) {
				std::atomic<bool> never{false};
				lru_seen s = lru_worker(fd, max, 100 + c, &never, 20000 * SCALE);
				_exit(s.wrong || s.bad_returns ? 1 : 0);
			}
			kids.push_back(pid);
		}
		std::mutex seen_lock;
		lru_seen seen;
		std::vector<std::thread> threads;
		// With children, the threads run until the children are done; alone, a fixed count.
		std::atomic<bool> never{false};
		for (int t = 0; t < 4 - LRU_CHILDREN; t++)
			threads.emplace_back([&, t] {
				lru_seen s = LRU_CHILDREN ? lru_worker(fd, max, 200 + t, &stop, -1)
							  : lru_worker(fd, max, 200 + t, &never,
								       5000 * SCALE);
				std::lock_guard<std::mutex> g(seen_lock);
				seen += s;
			});
		for (pid_t pid : kids) {
			int status = 0;
			waitpid(pid, &status, 0);
			EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
				<< "a child saw a wrong value or answer";
		}
		stop = true;
		for (std::thread &t : threads)
			t.join();
		EXPECT_EQ(seen.wrong, 0);
		EXPECT_EQ(seen.bad_returns, 0);
		EXPECT_LE(count_keys(fd), max);
		for (uint32_t k = 0; k < LRU_HOT; k++) {
			lru_value out;
			EXPECT_EQ(lookup(fd, &k, &out), 0)
				<< "hot key " << k << " was evicted (flags " << flags << ")";
			EXPECT_TRUE(lru_value_ok(out, k));
		}
		close(fd);
	}
}

// LRU writers SIGKILLed mid-stream, many times: the map is never wedged, keeps taking new
// keys, and never holds more than max.
TEST(Stress, KilledLruWritersNeverWedgeTheMap)
{
	const uint32_t max = 256;
	int fd = map_create(u::MAP_TYPE_LRU_HASH, 4, 32, max);
	ASSERT_GE(fd, 0);
	long bad = kill_writers_mid_stream([&](int round, std::atomic<long> *bad) {
		std::atomic<bool> never{false};
		lru_seen s;
		// Count as it goes: the kill comes at any moment.
		for (int i = 0;; i++) {
			s = lru_worker(fd, max, static_cast<uint32_t>(round * 100000 + i), &never,
				       100);
			*bad += s.wrong + s.bad_returns;
		}
	});
	EXPECT_EQ(bad, 0);
	alarm(60); // a wedged lock would hang here
	std::atomic<bool> never{false};
	lru_seen s = lru_worker(fd, max, 999, &never, 5000);
	EXPECT_EQ(s.wrong, 0);
	EXPECT_EQ(s.bad_returns, 0);
	uint32_t inserted = 0;
	for (uint32_t k = 100000; k < 100000 + 4 * max; k++) {
		lru_value v = lru_value_of(k, 0);
		inserted += update(fd, &k, &v) == 0;
	}
	alarm(0);
	EXPECT_EQ(inserted, 4 * max) << "an LRU map must always take a new key";
	EXPECT_LE(count_keys(fd), max);
	close(fd);
}

// LRU hits re-validated. Writers update keys of a domain four times the map's size with
// BPF_ANY, BPF_NOEXIST and BPF_EXIST and delete them, so that nearly every insert evicts
// and many updates fail (EEXIST, ENOENT) after taking an element that a reader may still
// be looking at. Readers look keys up through a copy-out lookup, LOOKUP_BATCH, and the
// program-side pointer lookup. Every value a copy-out or batch lookup gets must be a whole
// value of its key; and no value anyone sees, through a pointer even long after the
// lookup, may come from an update that failed: each writer notes its failed updates, the
// readers the updates whose values they saw, and the two sets must not meet.
void lru_hits_race(uint32_t type, uint32_t flags)
{
	constexpr uint32_t WRITERS = 2, READERS = 4;
	const bool percpu = type == u::MAP_TYPE_LRU_PERCPU_HASH;
	const uint32_t slots = percpu ? bpfmap_num_possible_cpus() : 1;
	const uint32_t max = 128, domain = 4 * max;
	const uint32_t per_writer = 30000 * SCALE;
	int fd = map_create(type, 4, sizeof(lru_value), max, flags);
	ASSERT_GE(fd, 0) << strerror(-fd);
	std::vector<std::vector<uint8_t>> failed(WRITERS, std::vector<uint8_t>(per_writer));
	std::vector<std::unique_ptr<std::atomic<uint8_t>[]>> seen;
	for (uint32_t w = 0; w < WRITERS; w++)
		seen.emplace_back(new std::atomic<uint8_t>[per_writer]());
	std::atomic<long> wrong{0}, bad_returns{0}, hits{0}, failures{0};
	std::atomic<uint32_t> writing{WRITERS};
	// A read value: whole in every CPU slot, of key q, by an update we know of.
	auto take = [&](const lru_value *v, uint32_t q) {
		uint64_t w = v[0].id >> 32, n = v[0].id & 0xffffffffu;
		bool ok = w < WRITERS && n < per_writer;
		for (uint32_t c = 0; c < slots; c++)
			ok &= lru_value_ok(v[c], q) && v[c].id == v[0].id;
		if (!ok) {
			wrong++;
			return;
		}
		seen[w][n].store(1, std::memory_order_relaxed);
		hits++;
	};
	// A value read through a pointer: the element may have been reused for any key since
	// the lookup, or be in the middle of a refill; whole values of any key count.
	auto take_through = [&](const void *p) {
		lru_value v;
		auto *words = static_cast<const uint64_t *>(p);
		for (int i = 0; i < 4; i++)
			reinterpret_cast<uint64_t *>(&v)[i] =
				__atomic_load_n(words + i, __ATOMIC_RELAXED);
		uint64_t w = v.id >> 32, n = v.id & 0xffffffffu;
		if (v.key < domain && lru_value_ok(v, static_cast<uint32_t>(v.key)) &&
		    w < WRITERS && n < per_writer)
			seen[w][n].store(1, std::memory_order_relaxed);
	};
	std::vector<std::thread> threads;
	for (uint32_t w = 0; w < WRITERS; w++)
		threads.emplace_back([&, w] {
			std::mt19937 rng(w);
			std::vector<lru_value> v(slots);
			uint32_t n = 0;
			// One update, numbered n: r is what it returned, ok whether r was allowed.
			auto one = [&](uint32_t k, uint64_t flags) {
				std::fill(v.begin(), v.end(),
					  lru_value_of(k, uint64_t{w} << 32 | n));
				long r = update(fd, &k, v.data(), flags);
				bool ok = r == 0 || (flags == u::BPF_NOEXIST && r == -EEXIST) ||
					  (flags == u::BPF_EXIST && r == -ENOENT);
				bad_returns += !ok;
				if (r != 0) {
					failed[w][n] = 1;
					failures++;
				}
				n++;
			};
			while (n + 2 < per_writer) {
				uint32_t k = rng() % domain;
				switch (rng() % 6) {
				case 0:
					one(k, u::BPF_ANY);
					break;
				case 1:
					one(k, u::BPF_NOEXIST);
					break;
				case 2:
					one(k, u::BPF_EXIST);
					break;
				case 3: {
					long r = del(fd, &k);
					bad_returns += r != 0 && r != -ENOENT;
					break;
				}
				default:
					// A hot key the pointer reader looks up: deleted, then an
					// update that must fail takes the element just freed (the
					// one the reader may hold), then the key is back.
					k = rng() % LRU_HOT;
					del(fd, &k);
					one(k, u::BPF_EXIST);
					one(k, u::BPF_NOEXIST);
					break;
				}
			}
			writing--;
		});
	for (uint32_t t = 0; t < READERS; t++)
		threads.emplace_back([&, t] {
			std::mt19937 rng(100 + t);
			std::vector<lru_value> v(slots);
			std::vector<uint32_t> keys(16);
			std::vector<lru_value> vals(16 * slots);
			bpfmap_map *m = bpfmap_map_get(fd);
			while (writing.load(std::memory_order_relaxed)) {
				if (t == 0) {
					uint32_t q = rng() % domain;
					long r = lookup(fd, &q, v.data());
					if (r == 0)
						take(v.data(), q);
					else
						bad_returns += r != -ENOENT;
					continue;
				}
				if (t >= 2) {
					// Hold the pointer a while and read through it now and then.
					uint32_t q = rng() % LRU_HOT;
					if (const void *p = bpfmap_map_lookup_elem(m, &q)) {
						for (int i = 0; i < 64; i++) {
							take_through(p);
							for (int j = 0; j < 50; j++)
								asm volatile("" ::: "memory");
						}
					}
					continue;
				}
				uint32_t token = 0;
				for (bool first = true;; first = false) {
					u::bpf_attr a{};
					a.batch.in_batch = first ? 0 : ptr(&token);
					a.batch.out_batch = ptr(&token);
					a.batch.keys = ptr(keys.data());
					a.batch.values = ptr(vals.data());
					a.batch.count = 16;
					a.batch.map_fd = static_cast<uint32_t>(fd);
					long r = sys(u::MAP_LOOKUP_BATCH, a);
					for (uint32_t i = 0; i < a.batch.count; i++)
						take(&vals[size_t(i) * slots], keys[i]);
					if (r != 0) {
						bad_returns += r != -ENOENT;
						break;
					}
				}
			}
			bpfmap_map_put(m);
		});
	for (auto &t : threads)
		t.join();
	long from_failed = 0;
	for (uint32_t w = 0; w < WRITERS; w++)
		for (uint32_t n = 0; n < per_writer; n++)
			from_failed += failed[w][n] && seen[w][n].load();
	EXPECT_EQ(wrong.load(), 0) << "values not of their key, or torn";
	EXPECT_EQ(from_failed, 0) << "values of updates that failed";
	EXPECT_EQ(bad_returns.load(), 0);
	EXPECT_GT(failures.load(), 0);
	EXPECT_GT(hits.load(), 0);
	printf("%ld hits, %ld failed updates\n", hits.load(), failures.load());
	close(fd);
}

TEST(Stress, LruHitsAreValuesOfSuccessfulUpdates) { lru_hits_race(u::MAP_TYPE_LRU_HASH, 0); }

TEST(Stress, NoCommonLruHitsAreValuesOfSuccessfulUpdates)
{
	lru_hits_race(u::MAP_TYPE_LRU_HASH, u::BPF_F_NO_COMMON_LRU);
}

TEST(Stress, PercpuLruHitsAreValuesOfSuccessfulUpdates)
{
	lru_hits_race(u::MAP_TYPE_LRU_PERCPU_HASH, 0);
}

} // namespace
