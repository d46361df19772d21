// Concurrency invariants under many threads and processes: no torn values, no lost keys,
// counts that add up, a full map that never holds more than max_entries, and writers
// killed at random points that never wedge or corrupt the map. The LRU and LPM trie cases
// are in stress_lru_test.cc and stress_lpm_test.cc, linked into the same binary.
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

#include "core/hash.h"
#include "stress_util.h"
#include "test_util.h"

using namespace bpfmap::test;

namespace {

// Large enough that a copy takes long and an element is reused while being read.
struct wide_value {
	uint64_t w[512];
};

struct narrow_value {
	uint64_t w[2];
};

struct race_result {
	long reads, missing, torn, failed_updates;
};

// A value word that names its key, the writer and the writer's iteration.
uint64_t stamp(uint32_t key, uint32_t writer, uint32_t i)
{
	return uint64_t{key} << 40 | uint64_t{i} << 8 | writer;
}

// Two writers replace the values of `keys` (every word of a value the same stamp) while
// two readers look them up, until the writers are done. Wide values make a reader's copy
// slow, so elements get reused under it; narrow ones make replacements fast and frequent.
// torn counts values that are not one stamp of the key looked up.
template <typename V>
race_result replace_under_readers(int fd, const std::vector<uint32_t> &keys, int iterations)
{
	std::atomic<bool> stop{false};
	std::atomic<long> reads{0}, missing{0}, torn{0}, failed{0};
	std::vector<std::thread> writers, readers;
	for (uint32_t t = 0; t < 2; t++)
		writers.emplace_back([&, t] {
			std::mt19937 rng(t);
			V v;
			for (int i = 0; i < iterations; i++) {
				uint32_t k = keys[rng() % keys.size()];
				for (auto &w : v.w)
					w = stamp(k, t, static_cast<uint32_t>(i));
				failed += update(fd, &k, &v, u::BPF_EXIST) != 0;
			}
		});
	for (int t = 0; t < 2; t++)
		readers.emplace_back([&, t] {
			std::mt19937 rng(100 + t);
			V v;
			while (!stop.load(std::memory_order_relaxed)) {
				uint32_t k = keys[rng() % keys.size()];
				reads++;
				if (lookup(fd, &k, &v) != 0) {
					missing++;
					continue;
				}
				bool whole = v.w[0] >> 40 == k && (v.w[0] & 0xff) < 2;
				for (auto w : v.w)
					whole &= w == v.w[0];
				torn += !whole;
			}
		});
	for (auto &w : writers)
		w.join();
	stop = true;
	for (auto &r : readers)
		r.join();
	return {reads.load(), missing.load(), torn.load(), failed.load()};
}

template <typename V>
int map_with_keys(uint32_t max, uint32_t flags, const std::vector<uint32_t> &keys)
{
	int fd = map_create(u::MAP_TYPE_HASH, 4, sizeof(V), max, flags);
	for (uint32_t k : keys) {
		V v;
		for (auto &w : v.w)
			w = stamp(k, 0, 0);
		if (fd < 0 || update(fd, &k, &v) != 0)
			return -1;
	}
	return fd;
}

// The copy-out lookup never returns a value half old and half new, even when the element
// a reader copies from is freed and reused under it.
TEST(Stress, ReplacedKeysNeverTear)
{
	std::vector<uint32_t> keys = {0, 1, 2, 3};
	int fd = map_with_keys<wide_value>(8, 0, keys);
	ASSERT_GE(fd, 0);
	race_result r = replace_under_readers<wide_value>(fd, keys, 20000 * SCALE);
	EXPECT_EQ(r.torn, 0) << "out of " << r.reads << " lookups";
	EXPECT_EQ(r.missing, 0) << "out of " << r.reads << " lookups";
	EXPECT_EQ(r.failed_updates, 0);
	EXPECT_GT(r.reads, 0);
	close(fd);
}

// Keys that are only ever replaced are found by every lookup, even when the element a
// reader stands on is reused for another key and the key's new element takes its slot.
TEST(Stress, ReplacedKeysNeverGoMissing)
{
	std::vector<uint32_t> keys = {0, 1, 2, 3};
	int fd = map_with_keys<narrow_value>(8, 0, keys);
	ASSERT_GE(fd, 0);
	race_result r = replace_under_readers<narrow_value>(fd, keys, 100000 * SCALE);
	EXPECT_EQ(r.missing, 0) << "out of " << r.reads << " lookups";
	EXPECT_EQ(r.torn, 0) << "out of " << r.reads << " lookups";
	EXPECT_EQ(r.failed_updates, 0);
	close(fd);
}

// The same with every key in one bucket's overflow chain: chain elements are replaced and
// reused under readers walking the chain.
TEST(Stress, ChainedKeysNeverTearOrGoMissing)
{
	std::vector<uint32_t> keys; // 40 keys of one of 256 buckets: 28 of them chained
	for (uint32_t k = 0; keys.size() < 40; k++)
		if ((bpfmap::hash_key(&k, 4, 0) & 255) == 9)
			keys.push_back(k);
	int fd = map_with_keys<wide_value>(1200, u::BPF_F_ZERO_SEED, keys);
	ASSERT_GE(fd, 0);
	race_result r = replace_under_readers<wide_value>(fd, keys, 5000 * SCALE);
	EXPECT_EQ(r.torn, 0) << "out of " << r.reads << " lookups";
	EXPECT_EQ(r.missing, 0) << "out of " << r.reads << " lookups";
	EXPECT_EQ(r.failed_updates, 0);
	EXPECT_EQ(count_keys(fd), keys.size());
	close(fd);
}

TEST(Stress, DisjointWritersLoseNothing)
{
	const uint32_t per_thread = 2000, threads_n = 4;
	int fd = map_create(u::MAP_TYPE_HASH, 4, 8, per_thread * threads_n);
	ASSERT_GE(fd, 0);
	std::atomic<long> errors{0};
	std::vector<std::thread> threads;
	for (uint32_t t = 0; t < threads_n; t++)
		threads.emplace_back([&, t] {
			for (int round = 0; round < SCALE; round++) {
				for (uint32_t i = 0; i < per_thread; i++) {
					uint32_t k = t * per_thread + i;
					uint64_t v = k + round;
					if (update(fd, &k, &v) != 0)
						errors++;
				}
				for (uint32_t i = 0; i < per_thread; i++) {
					uint32_t k = t * per_thread + i;
					uint64_t v;
					if (lookup(fd, &k, &v) != 0 || v != k + round)
						errors++;
					if (i % 2 && del(fd, &k) != 0)
						errors++;
				}
			}
		});
	// A walker runs alongside; it must simply terminate every walk.
	std::atomic<bool> stop{false};
	std::thread walker([&] {
		while (!stop)
			count_keys(fd);
	});
	for (auto &t : threads)
		t.join();
	stop = true;
	walker.join();
	EXPECT_EQ(errors.load(), 0);
	EXPECT_EQ(count_keys(fd), per_thread * threads_n / 2);
	close(fd);
}

// Threads fill and empty a map whose pool has no element to spare (a per-CPU hash: exactly
// max_entries elements; a NO_PREALLOC hash: a few spares), each over its own keys, so the
// pool's words of used bits keep turning full and free under concurrent takers and
// give-backs. A free element the pool lost track of would show as a map that cannot be
// filled to max_entries afterwards.
void churn_then_fill(uint32_t type, uint32_t flags)
{
	const uint32_t threads_n = 4, per_thread = 1024, max = threads_n * per_thread;
	int fd = map_create(type, 4, 8, max, flags);
	ASSERT_GE(fd, 0);
	// Room for every possible CPU's value; each 8-byte word names the key and the round.
	const size_t words = 1024;
	auto value_of = [&](uint32_t k, int round) {
		return std::vector<uint64_t>(words, stamp(k, 0, static_cast<uint32_t>(round)));
	};
	std::atomic<long> errors{0};
	std::vector<std::thread> threads;
	for (uint32_t t = 0; t < threads_n; t++)
		threads.emplace_back([&, t] {
			std::mt19937 rng(t);
			std::vector<bool> held(per_thread, false);
			for (int round = 0; round < 20 * SCALE; round++) {
				// Fill this thread's share completely, then free a random part of it.
				for (uint32_t i = 0; i < per_thread; i++) {
					uint32_t k = t * per_thread + i;
					std::vector<uint64_t> v = value_of(k, round);
					uint64_t flags = held[i] ? u::BPF_EXIST : u::BPF_NOEXIST;
					errors += update(fd, &k, v.data(), flags) != 0;
					held[i] = true;
				}
				for (uint32_t i = 0; i < per_thread; i++) {
					uint32_t k = t * per_thread + i;
					std::vector<uint64_t> out(words);
					if (lookup(fd, &k, out.data()) != 0 ||
					    out[0] != value_of(k, round)[0])
						errors++;
					if (rng() % 3 == 0) {
						errors += del(fd, &k) != 0;
						held[i] = false;
					}
				}
			}
		});
	for (auto &t : threads)
		t.join();
	EXPECT_EQ(errors.load(), 0);
	for (uint32_t k = 0; k < max; k++) {
		long r = del(fd, &k);
		EXPECT_TRUE(r == 0 || r == -ENOENT) << r;
	}
	for (uint32_t k = 0; k < max; k++)
		ASSERT_EQ(update(fd, &k, value_of(k, 0).data()), 0) << "capacity lost at key " << k;
	uint32_t extra = max;
	EXPECT_EQ(update(fd, &extra, value_of(extra, 0).data()), -E2BIG);
	for (uint32_t k = 0; k < max; k++) {
		std::vector<uint64_t> out(words);
		ASSERT_EQ(lookup(fd, &k, out.data()), 0);
		ASSERT_EQ(out[0], value_of(k, 0)[0]) << "key " << k;
	}
	close(fd);
}

TEST(Stress, PercpuPoolNeverLosesAFreeElement) { churn_then_fill(u::MAP_TYPE_PERCPU_HASH, 0); }

TEST(Stress, NoPreallocPoolNeverLosesAFreeElement)
{
	churn_then_fill(u::MAP_TYPE_HASH, u::BPF_F_NO_PREALLOC);
}

// One thread drains with LOOKUP_AND_DELETE_BATCH while others insert: every key comes out
// exactly once (nothing lost, nothing doubled) and with the value it went in with.
TEST(Stress, BatchDrainRacingWritersTakesEachKeyOnce)
{
	constexpr int WRITERS = 3;
	const uint32_t per_writer = 2000 * SCALE;
	int fd = map_create(u::MAP_TYPE_HASH, 4, 8, WRITERS * per_writer);
	ASSERT_GE(fd, 0);
	std::atomic<int> writing{WRITERS};
	std::vector<std::thread> ts;
	for (int w = 0; w < WRITERS; w++)
		ts.emplace_back([&, w] {
			for (uint32_t i = 0; i < per_writer; i++) {
				uint32_t k = w * per_writer + i;
				uint64_t v = uint64_t(k) * 7 + 1;
				EXPECT_EQ(update(fd, &k, &v, u::BPF_NOEXIST), 0);
			}
			writing--;
		});
	std::vector<int> seen(WRITERS * per_writer, 0);
	int bad_values = 0;
	auto drain_once = [&]() {
		uint32_t token = 0, keys[64];
		uint64_t vals[64];
		for (bool first = true;; first = false) {
			u::bpf_attr a{};
			a.batch.in_batch = first ? 0 : ptr(&token);
			a.batch.out_batch = ptr(&token);
			a.batch.keys = ptr(keys);
			a.batch.values = ptr(vals);
			a.batch.count = 64;
			a.batch.map_fd = static_cast<uint32_t>(fd);
			long r = sys(u::MAP_LOOKUP_AND_DELETE_BATCH, a);
			for (uint32_t i = 0; i < a.batch.count; i++) {
				seen[keys[i]]++;
				bad_values += vals[i] != uint64_t(keys[i]) * 7 + 1;
			}
			if (r != 0) {
				EXPECT_EQ(r, -ENOENT);
				return;
			}
		}
	};
	while (writing.load() > 0)
		drain_once();
	for (auto &t : ts)
		t.join();
	drain_once();
	EXPECT_EQ(bad_values, 0);
	int missing = 0, doubled = 0;
	for (int n : seen) {
		missing += n == 0;
		doubled += n > 1;
	}
	EXPECT_EQ(missing, 0);
	EXPECT_EQ(doubled, 0);
	EXPECT_EQ(count_keys(fd), 0u);
	close(fd);
}

// LOOKUP_BATCH reads buckets without their locks. While writers replace values (wide
// ones, so copies are slow) and delete and re-add half of the keys, every pass must return
// each stable key exactly once, no key twice, and only whole values.
template <uint32_t TYPE> void lookup_batch_under_writers()
{
	const uint32_t n = 2000;
	const bool percpu = TYPE == u::MAP_TYPE_PERCPU_HASH;
	const uint32_t words = 8, slots = percpu ? bpfmap_num_possible_cpus() : 1;
	int fd = map_create(TYPE, 4, words * 8, n);
	ASSERT_GE(fd, 0);
	// Each word: the key, the version and the writer (0 for the first fill).
	auto fill = [&](std::vector<uint64_t> &v, uint32_t k, uint32_t version) {
		std::fill(v.begin(), v.end(), uint64_t(k) << 32 | version);
	};
	std::atomic<long> bad_returns{0};
	std::vector<uint64_t> v(words * slots);
	for (uint32_t k = 0; k < n; k++) {
		fill(v, k, 0);
		ASSERT_EQ(update(fd, &k, v.data()), 0);
	}
	std::atomic<bool> stop{false};
	std::vector<std::thread> writers;
	for (uint32_t t = 0; t < 2; t++)
		writers.emplace_back([&, t] {
			std::mt19937 rng(t);
			std::vector<uint64_t> w(words * slots);
			for (uint32_t version = 1; !stop.load(std::memory_order_relaxed);
			     version++) {
				uint32_t k = rng() % n;
				fill(w, k, version << 1 | t);
				long r;
				if (k % 2 == 0) { // even keys: replaced in place, never absent
					r = update(fd, &k, w.data(), u::BPF_EXIST);
				} else if (rng() % 2) {
					r = del(fd, &k);
					r = r == -ENOENT ? 0 : r;
				} else {
					r = update(fd, &k, w.data());
				}
				bad_returns += r != 0;
			}
		});
	int passes = 0, torn = 0, doubled = 0, missing = 0;
	std::vector<uint32_t> keys(64);
	std::vector<uint64_t> vals(64 * words * slots);
	for (; passes < 100 * SCALE; passes++) {
		std::vector<int> seen(n, 0);
		uint32_t token = 0;
		for (bool first = true;; first = false) {
			u::bpf_attr a{};
			a.batch.in_batch = first ? 0 : ptr(&token);
			a.batch.out_batch = ptr(&token);
			a.batch.keys = ptr(keys.data());
			a.batch.values = ptr(vals.data());
			a.batch.count = 64;
			a.batch.map_fd = static_cast<uint32_t>(fd);
			long r = sys(u::MAP_LOOKUP_BATCH, a);
			for (uint32_t i = 0; i < a.batch.count; i++) {
				seen[keys[i]]++;
				const uint64_t *p = &vals[size_t(i) * words * slots];
				for (uint32_t j = 0; j < words * slots; j++)
					torn += p[j] >> 32 != keys[i] || p[j] != p[0];
			}
			if (r != 0) {
				ASSERT_EQ(r, -ENOENT);
				break;
			}
		}
		for (uint32_t k = 0; k < n; k++) {
			doubled += seen[k] > 1;
			missing += k % 2 == 0 && seen[k] != 1;
		}
	}
	stop = true;
	for (auto &t : writers)
		t.join();
	EXPECT_EQ(torn, 0);
	EXPECT_EQ(doubled, 0);
	EXPECT_EQ(missing, 0);
	EXPECT_EQ(bad_returns.load(), 0);
	close(fd);
}

TEST(Stress, LookupBatchUnderWritersSeesWholeBuckets)
{
	lookup_batch_under_writers<u::MAP_TYPE_HASH>();
}

TEST(Stress, PercpuLookupBatchUnderWritersSeesWholeBuckets)
{
	lookup_batch_under_writers<u::MAP_TYPE_PERCPU_HASH>();
}

TEST(Stress, FullMapNeverHoldsMoreThanMaxEntries)
{
	const uint32_t max = 100;
	int fd = map_create(u::MAP_TYPE_HASH, 4, 8, max);
	ASSERT_GE(fd, 0);
	std::atomic<long> bad{0};
	std::vector<std::thread> threads;
	for (int t = 0; t < 4; t++)
		threads.emplace_back([&, t] {
			std::mt19937 rng(t);
			for (int i = 0; i < 20000 * SCALE; i++) {
				uint32_t k = rng() % 400;
				uint64_t v = stamp(k, static_cast<uint32_t>(t), 0);
				// An update may find the map full; a delete may find the key gone.
				long r = (rng() % 3) ? update(fd, &k, &v) : -del(fd, &k);
				if (r != 0 && r != -E2BIG && r != ENOENT)
					bad++;
				uint64_t out;
				if (lookup(fd, &k, &out) == 0 &&
				    (out >> 40 != k || (out & 0xff) > 3))
					bad++;
			}
		});
	for (auto &t : threads)
		t.join();
	EXPECT_EQ(bad.load(), 0);
	EXPECT_LE(count_keys(fd), max);
	for (uint32_t k = 0; k < 400; k++)
		del(fd, &k);
	EXPECT_EQ(count_keys(fd), 0u);
	for (uint32_t k = 0; k < max; k++) {
		uint64_t v = k;
		ASSERT_EQ(update(fd, &k, &v), 0) << "no capacity was lost, key " << k;
	}
	close(fd);
}

TEST(Stress, ForkedWritersAllLand)
{
	const int children = 8;
	const uint32_t per_child = 500;
	int fd = map_create(u::MAP_TYPE_HASH, 4, 8, children * per_child);
	ASSERT_GE(fd, 0);
	std::vector<pid_t> pids;
	for (int c = 0; c < children; c++) {
		pid_t pid = fork();
		if (pid == 0) {
			for (uint32_t i = 0; i < per_child; i++) {
				uint32_t k = c * per_child + i;
				uint64_t v = k ^ 0xabcdef;
				if (update(fd, &k, &v) != 0)
					_exit(1);
			}
			_exit(0);
		}
		pids.push_back(pid);
	}
	for (pid_t pid : pids) {
		int status;
		ASSERT_EQ(waitpid(pid, &status, 0), pid);
		ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	for (uint32_t k = 0; k < children * per_child; k++) {
		uint64_t v;
		ASSERT_EQ(lookup(fd, &k, &v), 0);
		ASSERT_EQ(v, k ^ 0xabcdef);
	}
	close(fd);
}

// Writers are SIGKILLed mid-stream, many times; the survivor must still be able to write
// every bucket (no lock left held) and the map must stay walkable and usable.
TEST(Stress, KilledWritersNeverWedgeTheMap)
{
	const uint32_t max = 256;
	int fd = map_create(u::MAP_TYPE_HASH, 4, 8, max);
	ASSERT_GE(fd, 0);
	long bad = kill_writers_mid_stream([&](int round, std::atomic<long> *bad) {
		std::mt19937 rng(round);
		for (;;) {
			uint32_t k = rng() % max;
			uint64_t v = stamp(k, static_cast<uint32_t>(round), 0);
			// E2BIG: an element a killed writer held counts until the audit frees it.
			long r = rng() % 2 ? update(fd, &k, &v) : -del(fd, &k);
			*bad += r != 0 && r != -E2BIG && r != ENOENT;
			uint64_t out;
			*bad += lookup(fd, &k, &out) == 0 && out >> 40 != k;
		}
	});
	EXPECT_EQ(bad, 0);
	alarm(60); // a wedged lock would hang here; let the alarm fail the test instead
	for (uint32_t k = 0; k < max; k++)
		del(fd, &k);
	EXPECT_EQ(count_keys(fd), 0u);
	// What a killed writer held is reclaimed by the audit its successor runs: the whole
	// capacity is there again, and not one element more.
	for (uint32_t k = 0; k < max; k++) {
		uint64_t v = k;
		ASSERT_EQ(update(fd, &k, &v), 0) << "capacity lost at key " << k;
	}
	uint32_t extra = max;
	uint64_t v = 0;
	EXPECT_EQ(update(fd, &extra, &v), -E2BIG);
	alarm(0);
	EXPECT_EQ(count_keys(fd), max);
	close(fd);
}

long freeze(int fd)
{
	u::bpf_attr a{};
	a.elem.map_fd = static_cast<uint32_t>(fd);
	return sys(u::MAP_FREEZE, a);
}

// Map writable, write through the mapping, check by a syscall write that the map is not
// frozen under it, unmap; until a writable mapping is refused. Returns the violations.
// Successful mappings so far, counted across processes.
std::atomic<int> *mapped_count = [] {
	void *p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	return new (p) std::atomic<int>(0);
}();

int map_write_unmap_until_frozen(int fd, std::atomic<bool> *stop)
{
	int bad = 0;
	const uint32_t key = 0;
	const uint64_t val = 1;
	while (!stop->load()) {
		void *m = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED) {
			bad += errno != EPERM; // frozen is the only reason to refuse
			break;
		}
		static_cast<volatile char *>(m)[8] = 1;
		mapped_count->fetch_add(1);
		bad += update(fd, &key, &val) != 0; // EPERM here: frozen under a live mapping
		munmap(m, 4096);
		std::this_thread::yield();
	}
	return bad;
}

// Threads and processes map an mmapable array writable and unmap it in a loop while another
// thread tries to freeze it. A freeze never succeeds while any mapping is alive, and once
// it succeeded no writable mapping does; a process killed at any point holds nothing.
TEST(Stress, FreezeNeverOverlapsAWritableMapping)
{
	for (int round = 0; round < 4 * SCALE; round++) {
		int fd = map_create(u::MAP_TYPE_ARRAY, 4, 8, 1024, u::BPF_F_MMAPABLE);
		ASSERT_GE(fd, 0);
		// A child killed mid-loop: whatever it held goes with it.
		pid_t killed = fork();
		if (killed == 0) {
			std::atomic<bool> never{false};
			map_write_unmap_until_frozen(fd, &never);
			_exit(0);
		}
		usleep(2000 + round * 1500);
		kill(killed, SIGKILL);
		waitpid(killed, nullptr, 0);
		// A child that keeps going and reports its violations in its exit status.
		pid_t child = fork();
		if (child == 0) {
			std::atomic<bool> never{false};
			_exit(std::min(map_write_unmap_until_frozen(fd, &never), 100));
		}
		std::atomic<bool> stop{false};
		std::atomic<int> bad{0};
		std::vector<std::thread> mappers;
		for (int t = 0; t < 2; t++)
			mappers.emplace_back(
				[&] { bad += map_write_unmap_until_frozen(fd, &stop); });
		long err;
		int busy = 0;
		alarm(60); // a freeze that can never win would hang here
		for (int start = mapped_count->load(); mapped_count->load() < start + 300;)
			std::this_thread::yield(); // freeze while all three mappers are at it
		while ((err = freeze(fd)) == -EBUSY) {
			busy++;
			std::this_thread::yield();
		}
		alarm(0);
		EXPECT_EQ(err, 0);
		stop = true;
		for (std::thread &t : mappers)
			t.join();
		int status = 0;
		waitpid(child, &status, 0);
		EXPECT_TRUE(WIFEXITED(status));
		EXPECT_EQ(WEXITSTATUS(status), 0) << "violations in the child";
		EXPECT_EQ(bad.load(), 0);
		void *m = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		EXPECT_EQ(m, MAP_FAILED);
		EXPECT_EQ(errno, EPERM);
		printf("round %d: freeze won after %d EBUSY\n", round, busy);
		close(fd);
	}
}

} // namespace
