// BPF_MAP_TYPE_USER_RINGBUF (part of ringbuf_test): a producer and the drain, bad headers,
// and one drainer at a time, even when a drainer dies inside its drain.
#include <gtest/gtest.h>

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "bpfmap/ringbuf.hpp"
#include "ringbuf_util.h"

using namespace ringbuf_test;

// ---- USER_RINGBUF --------------------------------------------------------------------------

TEST(UserRingbuf, ProducerAndDrain)
{
	int fd = map_create(USER_RINGBUF, 0, 0, 4 * PAGE);
	ASSERT_GE(fd, 0);
	bpfmap_map *m = bpfmap_map_get(fd);
	bpfmap::UserRingProducer prod;
	ASSERT_EQ(bpfmap::UserRingProducer::open(fd, prod), 0);
	RingProducer wrong;
	EXPECT_EQ(RingProducer::open(fd, wrong), EINVAL)
		<< "a user ring takes no program-side records";
	EXPECT_EQ(bpfmap_ringbuf_reserve(m, 8, 0), nullptr);
	int err = 0;
	EXPECT_EQ(prod.reserve(4 * PAGE, &err), nullptr);
	EXPECT_EQ(err, E2BIG);
	for (int i = 0; i < 5; i++) {
		auto *rec = static_cast<char *>(prod.reserve(3 + i, &err));
		ASSERT_NE(rec, nullptr) << err;
		memset(rec, 'a' + i, 3 + i);
		if (i == 2)
			prod.discard(rec);
		else
			prod.submit(rec);
	}
	drained d;
	d.stop_after = 1;
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 4), -EINVAL);
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), 2)
		<< "stops after the record that returned 1";
	EXPECT_EQ(d.recs, (std::vector<std::string>{"aaa", "bbbb"}));
	d = drained{};
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), 2)
		<< "the discarded record is skipped, not counted";
	EXPECT_EQ(d.recs, (std::vector<std::string>{"dddddd", "eeeeeee"}));
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), 0);
	// A drain from inside a drain: EBUSY.
	auto *rec = prod.reserve(1, &err);
	ASSERT_NE(rec, nullptr);
	prod.submit(rec);
	d = drained{};
	d.nested = m;
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), 1);
	EXPECT_EQ(d.nested_ret, -EBUSY);
	// Fill it; the next reserve says ENOSPC; a blocking one times out, or gets room from
	// a drain in another thread.
	while (void *r = prod.reserve(1000, &err))
		prod.submit(r);
	EXPECT_EQ(err, ENOSPC);
	EXPECT_EQ(prod.reserve_blocking(1000, 30, &err), nullptr);
	EXPECT_EQ(err, ETIMEDOUT);
	std::thread drainer([&] {
		usleep(20000);
		drained dd;
		bpfmap_user_ringbuf_drain(m, on_drain, &dd, 0);
	});
	void *r = prod.reserve_blocking(1000, 5000, &err);
	drainer.join();
	EXPECT_NE(r, nullptr) << strerror(err);
	bpfmap_map_put(m);
	close(fd);
}

// What a producer writes is not trusted: a header that claims more than producer_pos
// covers, or more than the ring holds, fails the drain as in the kernel.
TEST(UserRingbuf, BadHeadersFailTheDrain)
{
	int fd = map_create(USER_RINGBUF, 0, 0, PAGE);
	ASSERT_GE(fd, 0);
	bpfmap_map *m = bpfmap_map_get(fd);
	// libbpf's mapping of a user ring: producer page and data writable.
	void *p = mmap(nullptr, PAGE + 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PAGE);
	ASSERT_NE(p, MAP_FAILED);
	auto *prod_pos = static_cast<uint64_t *>(p);
	auto *hdr = reinterpret_cast<uint32_t *>(static_cast<char *>(p) + PAGE);
	hdr[0] = 100; // committed, 100 bytes
	__atomic_store_n(prod_pos, 16, __ATOMIC_RELEASE);
	drained d;
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), -EINVAL);
	hdr[0] = 8000;
	__atomic_store_n(prod_pos, 8008, __ATOMIC_RELEASE);
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), -E2BIG);
	__atomic_store_n(prod_pos, 12, __ATOMIC_RELEASE);
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), -EINVAL)
		<< "producer_pos not 8-aligned";
	hdr[0] = 8;
	__atomic_store_n(prod_pos, 16, __ATOMIC_RELEASE);
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), 1);
	EXPECT_TRUE(d.recs.size() == 1 && d.recs[0].size() == 8);
	munmap(p, 3 * PAGE);
	bpfmap_map_put(m);
	close(fd);
}

// Producer threads and a consumer thread at once (run under ThreadSanitizer too): every
// record arrives once, intact, in order per producer.

// ---- One drainer at a time ----------------------------------------------------------------

namespace {
// What the drainers of one user ring share across processes: whether one is inside a
// callback, and the sequence number the next record must carry.
struct drain_check {
	std::atomic<int> inside;
	std::atomic<long> overlaps, next_seq, out_of_order, drained;
};

long on_checked_drain(const void *data, uint64_t size, void *ctx)
{
	auto *dc = static_cast<drain_check *>(ctx);
	if (dc->inside.fetch_add(1) != 0)
		dc->overlaps++;
	long seq = -1;
	if (size == sizeof(seq))
		memcpy(&seq, data, sizeof(seq));
	if (seq != dc->next_seq.load())
		dc->out_of_order++;
	dc->next_seq.store(seq + 1);
	dc->drained++;
	for (int i = 0; i < 50; i++) // stay inside a while
		std::atomic_signal_fence(std::memory_order_seq_cst);
	dc->inside.fetch_sub(1);
	return 0;
}
} // namespace

// Drainers in three processes of two threads each, while a producer keeps the ring fed:
// never two inside a drain at once, and every record is drained once, in order.
TEST(UserRingbuf, ConcurrentDrainersNeverOverlap)
{
	int fd = map_create(USER_RINGBUF, 0, 0, 16 * PAGE);
	ASSERT_GE(fd, 0);
	bpfmap_map *m = bpfmap_map_get(fd);
	auto *dc = static_cast<drain_check *>(mmap(nullptr, sizeof(drain_check),
						   PROT_READ | PROT_WRITE,
						   MAP_SHARED | MAP_ANONYMOUS, -1, 0));
	ASSERT_NE(dc, MAP_FAILED);
	new (dc) drain_check{};
	const long total = 20000L * SCALE;
	std::atomic<bool> stop{false};
	std::vector<pid_t> pids;
	for (int p = 0; p < 3; p++) {
		pid_t pid = fork();
		if (pid == 0) {
			auto drain = [&] {
				while (dc->drained.load() < total) {
					long r = bpfmap_user_ringbuf_drain(m, on_checked_drain, dc,
									   0);
					if (r < 0 && r != -EBUSY)
						_exit(3);
				}
			};
			std::thread t(drain);
			drain();
			t.join();
			_exit(0);
		}
		pids.push_back(pid);
	}
	bpfmap::UserRingProducer prod;
	ASSERT_EQ(bpfmap::UserRingProducer::open(fd, prod), 0);
	for (long seq = 0; seq < total; seq++) {
		int err = 0;
		void *rec = prod.reserve_blocking(sizeof(seq), 10000, &err);
		ASSERT_NE(rec, nullptr) << strerror(err);
		memcpy(rec, &seq, sizeof(seq));
		prod.submit(rec);
	}
	for (pid_t pid : pids) {
		int st = 0;
		waitpid(pid, &st, 0);
		EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "drainer status " << st;
	}
	stop = true;
	EXPECT_EQ(dc->overlaps.load(), 0);
	EXPECT_EQ(dc->out_of_order.load(), 0);
	EXPECT_EQ(dc->drained.load(), total);
	munmap(dc, sizeof(drain_check));
	bpfmap_map_put(m);
	close(fd);
}

namespace {
long block_in_drain(const void *, uint64_t, void *ctx)
{
	int wfd = *static_cast<int *>(ctx);
	char c = 'd';
	if (write(wfd, &c, 1) != 1)
		_exit(2);
	pause();
	return 0;
}
} // namespace

// A drainer killed inside its drain leaves its word in the busy slot: others get EBUSY
// while it lives and take the drain over once it is gone. A word naming no possible
// thread (a corrupt one) is taken over too; one naming a live thread elsewhere is not.
TEST(UserRingbuf, ADeadDrainerIsReplaced)
{
	int fd = map_create(USER_RINGBUF, 0, 0, PAGE);
	ASSERT_GE(fd, 0);
	bpfmap_map *m = bpfmap_map_get(fd);
	bpfmap::UserRingProducer prod;
	ASSERT_EQ(bpfmap::UserRingProducer::open(fd, prod), 0);
	for (int i = 0; i < 2; i++) {
		void *rec = prod.reserve(8);
		ASSERT_NE(rec, nullptr);
		memset(rec, 'a' + i, 8);
		prod.submit(rec);
	}
	int pfd[2];
	ASSERT_EQ(pipe(pfd), 0);
	pid_t pid = fork();
	if (pid == 0) {
		bpfmap_user_ringbuf_drain(m, block_in_drain, &pfd[1], 0);
		_exit(0);
	}
	char c = 0;
	ASSERT_EQ(read(pfd[0], &c, 1), 1);
	drained d;
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), -EBUSY);
	kill(pid, SIGKILL);
	waitpid(pid, nullptr, 0);
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), 2)
		<< "the dead drainer never finished its record";
	EXPECT_EQ(d.recs, (std::vector<std::string>{"aaaaaaaa", "bbbbbbbb"}));
	raw_ring raw(fd);
	ASSERT_TRUE(raw.p);
	EXPECT_EQ(raw_ring::get64(raw.busy()), 0u);
	raw_ring::put64(raw.busy(), uint64_t{0x7fffffff} << 32 | 12345);
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), 0)
		<< "a corrupt word is no drainer";
	raw_ring::put64(raw.busy(), uint64_t{1} << 32 | 1); // init: alive
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), -EBUSY);
	raw_ring::put64(raw.busy(), 0);
	close(pfd[0]);
	close(pfd[1]);
	bpfmap_map_put(m);
	close(fd);
}
