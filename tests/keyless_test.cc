// QUEUE, STACK and BLOOM_FILTER: the program-side calls (push, pop, peek), producers and a
// consumer in different processes, and many threads at once. The syscall side is compared
// with the kernel in kernel_diff_test. Then each as untrusted shared memory: bad words
// written into its control block, after which every command must still return.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "region_poke.h"
#include "test_util.h"

using namespace bpfmap::test;

namespace {

constexpr uint32_t QUEUE = 22, STACK = 23, BLOOM = 30;

struct handle {
	int fd;
	bpfmap_map *m;
	explicit handle(int f)
		: fd(f)
		, m(bpfmap_map_get(f))
	{
	}
	~handle()
	{
		bpfmap_map_put(m);
		close(fd);
	}
};

uint64_t pop64(bpfmap_map *m, long *err)
{
	uint64_t v = 0xdead;
	*err = bpfmap_map_pop_elem(m, &v);
	return v;
}

int bloom_create(uint32_t vs, uint32_t max, uint64_t nr_hashes)
{
	return map_create(BLOOM, 0, vs, max, 0, "", nr_hashes);
}

} // namespace

TEST(QueueStack, ProgramSideOrderAndLimits)
{
	for (uint32_t type : {QUEUE, STACK}) {
		handle h(map_create(type, 0, 8, 3));
		ASSERT_NE(h.m, nullptr);
		long err;
		uint64_t v = pop64(h.m, &err);
		EXPECT_EQ(err, -ENOENT);
		EXPECT_EQ(v, 0u) << "an empty pop zeroes the value";
		for (uint64_t i = 1; i <= 3; i++)
			ASSERT_EQ(bpfmap_map_push_elem(h.m, &i, 0), 0);
		uint64_t four = 4;
		EXPECT_EQ(bpfmap_map_push_elem(h.m, &four, 0), -E2BIG);
		EXPECT_EQ(bpfmap_map_push_elem(h.m, &four, u::BPF_NOEXIST), -EINVAL);
		EXPECT_EQ(bpfmap_map_push_elem(h.m, &four, 3), -EINVAL);
		// BPF_EXIST drops the oldest value, 1, for either type.
		EXPECT_EQ(bpfmap_map_push_elem(h.m, &four, u::BPF_EXIST), 0);
		uint64_t peeked = 0;
		EXPECT_EQ(bpfmap_map_peek_elem(h.m, &peeked), 0);
		std::vector<uint64_t> got;
		while ((v = pop64(h.m, &err)), err == 0)
			got.push_back(v);
		EXPECT_EQ(err, -ENOENT);
		std::vector<uint64_t> want = type == QUEUE ? std::vector<uint64_t>{2, 3, 4}
							   : std::vector<uint64_t>{4, 3, 2};
		EXPECT_EQ(got, want);
		EXPECT_EQ(peeked, want[0]);
		// The keyed helpers answer as the kernel's do for these maps.
		uint32_t key = 0;
		EXPECT_EQ(bpfmap_map_lookup_elem(h.m, &key), nullptr);
		EXPECT_EQ(bpfmap_map_update_elem(h.m, nullptr, &four, 0), -EINVAL);
		EXPECT_EQ(bpfmap_map_delete_elem(h.m, nullptr), -EINVAL);
	}
}

TEST(QueueStack, ReadOnlyProgAndOtherTypes)
{
	handle q(map_create(QUEUE, 0, 4, 2, u::BPF_F_RDONLY_PROG));
	ASSERT_NE(q.m, nullptr);
	uint32_t v = 9;
	EXPECT_EQ(bpfmap_map_push_elem(q.m, &v, 0), -EACCES);
	EXPECT_EQ(bpfmap_map_pop_elem(q.m, &v), -EACCES);
	EXPECT_EQ(update(q.fd, nullptr, &v), 0) << "the syscall side may still write";
	EXPECT_EQ(bpfmap_map_peek_elem(q.m, &v), 0);
	EXPECT_EQ(v, 9u);

	handle hash(map_create(1, 4, 4, 2));
	EXPECT_EQ(bpfmap_map_push_elem(hash.m, &v, 0), -EINVAL);
	EXPECT_EQ(bpfmap_map_pop_elem(hash.m, &v), -EINVAL);
	EXPECT_EQ(bpfmap_map_peek_elem(hash.m, &v), -EINVAL);
}

TEST(Bloom, ProgramSidePushPeek)
{
	handle b(bloom_create(12, 100, 3));
	ASSERT_NE(b.m, nullptr);
	char v[12] = "hello world";
	EXPECT_EQ(bpfmap_map_peek_elem(b.m, v), -ENOENT);
	EXPECT_EQ(bpfmap_map_push_elem(b.m, v, u::BPF_EXIST), -EINVAL);
	EXPECT_EQ(bpfmap_map_push_elem(b.m, v, 0), 0);
	EXPECT_EQ(bpfmap_map_peek_elem(b.m, v), 0);
	EXPECT_EQ(lookup(b.fd, nullptr, v), 0) << "the syscall side sees the program's push";
	EXPECT_EQ(bpfmap_map_pop_elem(b.m, v), -EINVAL);
	EXPECT_EQ(bpfmap_map_lookup_elem(b.m, nullptr), nullptr);
	EXPECT_EQ(bpfmap_map_delete_elem(b.m, nullptr), -EOPNOTSUPP);
}

#ifndef __SANITIZE_THREAD__ // TSan cannot follow fork children that keep running
// Producers in four processes push (producer, sequence) pairs into a small queue, retrying
// when it is full; a consumer in a fifth process pops them. Every pair arrives exactly once,
// each producer's in order.
TEST(QueueStack, CrossProcessProducersAndConsumer)
{
	constexpr int PRODUCERS = 4;
	const uint32_t per = 5000 * SCALE;
	int fd = map_create(QUEUE, 0, 8, 64);
	ASSERT_GE(fd, 0);
	std::vector<pid_t> kids;
	for (int p = 0; p < PRODUCERS; p++) {
		pid_t pid = fork();
		if (pid == 0) {
			bpfmap_map *m = bpfmap_map_get(fd);
			for (uint32_t i = 0; i < per; i++) {
				uint64_t v = static_cast<uint64_t>(p) << 32 | i;
				while (bpfmap_map_push_elem(m, &v, 0) == -E2BIG)
					sched_yield();
			}
			_exit(0);
		}
		kids.push_back(pid);
	}
	int pipefd[2];
	ASSERT_EQ(pipe(pipefd), 0);
	pid_t consumer = fork();
	if (consumer == 0) {
		bpfmap_map *m = bpfmap_map_get(fd);
		std::vector<uint32_t> next(PRODUCERS, 0);
		uint64_t bad = 0, total = 0;
		while (total < per * PRODUCERS) {
			uint64_t v;
			if (bpfmap_map_pop_elem(m, &v) != 0) {
				sched_yield();
				continue;
			}
			uint32_t p = static_cast<uint32_t>(v >> 32), i = static_cast<uint32_t>(v);
			if (p >= PRODUCERS || i != next[p])
				bad++;
			else
				next[p]++;
			total++;
		}
		uint64_t out[2] = {total, bad};
		ssize_t n = write(pipefd[1], out, sizeof(out));
		_exit(n == sizeof(out) ? 0 : 1);
	}
	for (pid_t pid : kids) {
		int st;
		waitpid(pid, &st, 0);
		EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	int st;
	waitpid(consumer, &st, 0);
	EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	uint64_t out[2] = {};
	ASSERT_EQ(read(pipefd[0], out, sizeof(out)), static_cast<ssize_t>(sizeof(out)));
	EXPECT_EQ(out[0], static_cast<uint64_t>(per) * PRODUCERS);
	EXPECT_EQ(out[1], 0u) << "pairs out of order, repeated or invented";
	uint64_t v;
	EXPECT_EQ(lookup(fd, nullptr, &v), -ENOENT) << "left over in the queue";
	close(fd);
	close(pipefd[0]);
	close(pipefd[1]);
}
#endif

// Threads push and pop a stack and a queue at once, some overwriting with BPF_EXIST: every
// value popped was pushed and whole, and what was pushed is what was popped, overwritten or
// left.
TEST(QueueStack, ThreadsConserveValues)
{
	for (uint32_t type : {QUEUE, STACK}) {
		handle h(map_create(type, 0, 16, 32));
		ASSERT_NE(h.m, nullptr);
		const int per = 20000 * SCALE;
		std::atomic<long> pushed{0}, popped{0}, exist_pushes{0}, torn{0};
		std::vector<std::thread> ts;
		for (int t = 0; t < 4; t++)
			ts.emplace_back([&, t] {
				std::mt19937 rng(t);
				for (int i = 0; i < per; i++) {
					uint64_t v[2];
					if (rng() % 2) {
						v[0] = static_cast<uint64_t>(t) << 32 |
						       static_cast<uint32_t>(i);
						v[1] = ~v[0];
						bool exist = rng() % 8 == 0;
						long r = bpfmap_map_push_elem(
							h.m, v, exist ? uint64_t{u::BPF_EXIST} : 0);
						if (r == 0) {
							pushed++;
							exist_pushes += exist;
						} else if (r != -E2BIG) {
							torn++; // no other answer is possible
						}
					} else if (bpfmap_map_pop_elem(h.m, v) == 0) {
						popped++;
						if (v[1] != ~v[0])
							torn++;
					}
				}
			});
		for (auto &t : ts)
			t.join();
		long left = 0;
		uint64_t v[2];
		while (bpfmap_map_pop_elem(h.m, v) == 0)
			left++;
		EXPECT_EQ(torn.load(), 0);
		// Only a BPF_EXIST push into a full map drops a value, the oldest, at most one.
		long dropped = pushed - popped - left;
		EXPECT_GE(dropped, 0);
		EXPECT_LE(dropped, exist_pushes.load());
		EXPECT_LE(left, 32);
	}
}

// Threads push disjoint values into one filter at once; afterwards every value is found.
TEST(Bloom, ConcurrentPushesAreNeverLost)
{
	handle b(bloom_create(8, 50000, 0));
	ASSERT_NE(b.m, nullptr);
	const uint64_t per = 10000 * SCALE / 5;
	std::vector<std::thread> ts;
	for (uint64_t t = 0; t < 4; t++)
		ts.emplace_back([&, t] {
			for (uint64_t i = 0; i < per; i++) {
				uint64_t v = t << 40 | i;
				EXPECT_EQ(bpfmap_map_push_elem(b.m, &v, 0), 0);
			}
		});
	for (auto &t : ts)
		t.join();
	uint64_t missing = 0;
	for (uint64_t t = 0; t < 4; t++)
		for (uint64_t i = 0; i < per; i++) {
			uint64_t v = t << 40 | i;
			missing += bpfmap_map_peek_elem(b.m, &v) != 0;
		}
	EXPECT_EQ(missing, 0u);
}

// ---- a corrupt queue, stack or filter --------------------------------------------------

namespace {

// queue_stack_maps.cc's control block: the lock (64 bytes), then head, tail and size;
// bloom_filter.cc's: bitset_mask, hash_seed, aligned_u32_count, nr_hash_funcs.
constexpr off_t QS_HEAD = 64, QS_TAIL = 68, QS_SIZE = 72;
constexpr off_t BLOOM_MASK = 0, BLOOM_SEED = 4, BLOOM_U32S = 8, BLOOM_NR_HASHES = 12;

// Every queue or stack command on h, each of which must give EFAULT (and zero the value it
// would have filled). The number that did not.
int every_command_faults(const handle &h)
{
	int failed = 0;
	uint64_t v = 7;
	failed += expect_one_of(bpfmap_map_push_elem(h.m, &v, 0), {-EFAULT}, "push");
	failed += expect_one_of(bpfmap_map_push_elem(h.m, &v, u::BPF_EXIST), {-EFAULT},
				"push, BPF_EXIST");
	failed += expect_one_of(bpfmap_map_pop_elem(h.m, &v), {-EFAULT}, "pop");
	failed += expect_one_of(static_cast<long>(v), {0}, "the value of a failed pop");
	v = 7;
	failed += expect_one_of(bpfmap_map_peek_elem(h.m, &v), {-EFAULT}, "peek");
	failed += expect_one_of(static_cast<long>(v), {0}, "the value of a failed peek");
	failed += expect_one_of(lookup(h.fd, nullptr, &v), {-EFAULT}, "syscall peek");
	failed += expect_one_of(update(h.fd, nullptr, &v), {-EFAULT}, "syscall push");
	failed += expect_one_of(elem(u::MAP_LOOKUP_AND_DELETE_ELEM, h.fd, nullptr, &v), {-EFAULT},
				"syscall pop");
	return failed;
}

} // namespace

// Head or tail past the ring, as another process may write them: every command says
// EFAULT and indexes nothing; with both back in the ring the map works again.
TEST(QueueStack, HeadOrTailOutOfRangeFaults)
{
	for (uint32_t type : {QUEUE, STACK}) {
		SCOPED_TRACE(type == QUEUE ? "queue" : "stack");
		handle h(map_create(type, 0, 8, 4)); // 5 slots
		ASSERT_NE(h.m, nullptr);
		for (uint64_t i = 1; i <= 2; i++)
			ASSERT_EQ(bpfmap_map_push_elem(h.m, &i, 0), 0);
		ASSERT_EQ(peek<uint32_t>(h.fd, ctl_offset(h.fd, QS_SIZE)), 5u);
		ASSERT_EQ(peek<uint32_t>(h.fd, ctl_offset(h.fd, QS_HEAD)), 2u);
		for (off_t field : {QS_HEAD, QS_TAIL})
			for (uint32_t bad : {5u, 1000u, 0x7fffffffu, 0xffffffffu}) {
				uint32_t saved = peek<uint32_t>(h.fd, ctl_offset(h.fd, field));
				poke<uint32_t>(h.fd, ctl_offset(h.fd, field), bad);
				EXPECT_TRUE(in_child([&] { return every_command_faults(h); }))
					<< (field == QS_HEAD ? "head " : "tail ") << bad;
				poke<uint32_t>(h.fd, ctl_offset(h.fd, field), saved);
			}
		// The shared size is only checked at attach: a scribbled one changes nothing.
		poke<uint32_t>(h.fd, ctl_offset(h.fd, QS_SIZE), 0xffffffffu);
		// Head and tail at the ring's last slot are in range.
		poke<uint32_t>(h.fd, ctl_offset(h.fd, QS_HEAD), 4);
		poke<uint32_t>(h.fd, ctl_offset(h.fd, QS_TAIL), 4);
		uint64_t v = 0;
		EXPECT_EQ(bpfmap_map_pop_elem(h.m, &v), -ENOENT);
		for (uint64_t i = 1; i <= 4; i++)
			ASSERT_EQ(bpfmap_map_push_elem(h.m, &i, 0), 0);
		EXPECT_EQ(bpfmap_map_push_elem(h.m, &v, 0), -E2BIG);
		EXPECT_EQ(bpfmap_map_pop_elem(h.m, &v), 0);
		EXPECT_EQ(v, type == QUEUE ? 1u : 4u);
	}
}

// A process that attaches checks the control block: the ring's size must be the header's
// max_entries + 1 and head and tail inside it.
TEST(QueueStack, AttachRefusesABadControlBlock)
{
	for (uint32_t type : {QUEUE, STACK}) {
		handle h(map_create(type, 0, 8, 4));
		ASSERT_NE(h.m, nullptr);
		auto with = [&](off_t field, uint32_t value) {
			return open_forged_copy(
				h.fd, "qs_forged", [&](std::vector<char> &b, size_t c) {
					memcpy(b.data() + c + field, &value, sizeof(value));
				});
		};
		long ok = with(QS_HEAD, 4);
		ASSERT_GE(ok, 0) << "a copy with head in range opens";
		close(static_cast<int>(ok));
		EXPECT_LT(with(QS_SIZE, 6), 0);
		EXPECT_LT(with(QS_SIZE, 0), 0);
		EXPECT_LT(with(QS_HEAD, 5), 0);
		EXPECT_LT(with(QS_TAIL, 0xffffffffu), 0);
	}
}

// The filter's hash count, mask and word count are checked at attach against the header
// (the seed is free); a copy that disagrees does not open.
TEST(Bloom, AttachRefusesABadControlBlock)
{
	handle b(bloom_create(8, 100, 3));
	ASSERT_NE(b.m, nullptr);
	auto with = [&](off_t field, uint32_t value) {
		return open_forged_copy(
			b.fd, "bloom_forged", [&](std::vector<char> &bytes, size_t c) {
				memcpy(bytes.data() + c + field, &value, sizeof(value));
			});
	};
	ASSERT_EQ(peek<uint32_t>(b.fd, ctl_offset(b.fd, BLOOM_NR_HASHES)), 3u);
	ASSERT_EQ(peek<uint32_t>(b.fd, ctl_offset(b.fd, BLOOM_U32S)), 2u);
	long ok = with(BLOOM_SEED, 12345);
	ASSERT_GE(ok, 0) << "any seed is a filter's own";
	close(static_cast<int>(ok));
	EXPECT_LT(with(BLOOM_NR_HASHES, 0xffffffffu), 0);
	EXPECT_LT(with(BLOOM_NR_HASHES, 4), 0);
	EXPECT_LT(with(BLOOM_MASK, 0xffffffffu), 0);
	EXPECT_LT(with(BLOOM_U32S, 1u << 30), 0);
}

// A filter already attached reads nothing but bits: a control block scribbled on after
// attach changes no answer, and bits scribbled on give wrong answers, quickly.
TEST(Bloom, ScribbledFilterStillAnswers)
{
	handle b(bloom_create(8, 100, 3));
	ASSERT_NE(b.m, nullptr);
	uint64_t v = 42;
	ASSERT_EQ(bpfmap_map_push_elem(b.m, &v, 0), 0);
	for (off_t field : {BLOOM_MASK, BLOOM_SEED, BLOOM_U32S, BLOOM_NR_HASHES})
		poke<uint32_t>(b.fd, ctl_offset(b.fd, field), 0xffffffffu);
	EXPECT_TRUE(in_child([&] {
		int failed = 0;
		uint64_t x = 42;
		failed +=
			expect_one_of(bpfmap_map_peek_elem(b.m, &x), {0}, "peek of a pushed value");
		failed += expect_one_of(lookup(b.fd, nullptr, &x), {0}, "syscall peek");
		x = 43;
		failed += expect_one_of(bpfmap_map_push_elem(b.m, &x, 0), {0}, "push");
		failed +=
			expect_one_of(bpfmap_map_peek_elem(b.m, &x), {0}, "peek of the new value");
		return failed;
	}));
	off_t bits = region_file_size(b.fd) - REGION_HEADER_PAGE;
	for (off_t off = 0; off < bits; off += 8)
		poke<uint64_t>(b.fd, off, 0);
	EXPECT_TRUE(in_child([&] {
		uint64_t x = 42;
		return expect_one_of(bpfmap_map_peek_elem(b.m, &x), {-ENOENT},
				     "peek after zeroing");
	}));
}
