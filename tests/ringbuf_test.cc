// BPF_MAP_TYPE_RINGBUF: records and their headers as the kernel lays them out (read here
// through mmap() of the map fd, as libbpf reads them), wrap-around, discard, a full ring,
// query, commits out of order, waking a sleeping consumer, and producers in several
// processes with one consumer, and who may submit (any thread of the reserving process; a
// reaped record's late submit changes nothing). USER_RINGBUF and one drainer at a time are
// in user_ringbuf_test.cc, what a corrupt or scribbled region does (errnos, never a crash
// or a hang) in ringbuf_corrupt_test.cc, both linked into this binary. Creation and command
// errnos are compared with the kernel in kernel_diff_test.
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

TEST(Ringbuf, RecordHeadersAsTheKernelLaysThemOut)
{
	ring r(4 * PAGE);
	ASSERT_NE(r.m, nullptr);
	ring_mmap mm(r.fd, 4 * PAGE);
	ASSERT_TRUE(mm.cons && mm.prod_page);
	auto *a = static_cast<char *>(bpfmap_ringbuf_reserve(r.m, 13, 0));
	ASSERT_NE(a, nullptr);
	EXPECT_EQ(mm.prod(), rec_len(13));
	EXPECT_EQ(mm.len_at(0), 13u | BUSY);
	EXPECT_EQ(mm.pg_off_at(0), 3u); // the kernel's: one page of struct, two position pages
	memcpy(a, "hello, ring!!", 13);
	bpfmap_ringbuf_submit(a, 0);
	EXPECT_EQ(mm.len_at(0), 13u);
	EXPECT_EQ(memcmp(mm.data() + 8, "hello, ring!!", 13), 0);
	auto *b = static_cast<char *>(bpfmap_ringbuf_reserve(r.m, 5000, 0));
	ASSERT_NE(b, nullptr);
	bpfmap_ringbuf_discard(b, 0);
	EXPECT_EQ(mm.len_at(rec_len(13)), 5000u | DISCARD);
	auto *c = static_cast<char *>(bpfmap_ringbuf_reserve(r.m, 8, 0));
	ASSERT_NE(c, nullptr);
	uint64_t c_pos = rec_len(13) + rec_len(5000);
	EXPECT_EQ(mm.pg_off_at(c_pos), 3u + c_pos / PAGE);
	bpfmap_ringbuf_submit(c, 0);
	EXPECT_EQ(bpfmap_ringbuf_reserve(r.m, 8, 1), nullptr) << "reserve flags must be 0";
	EXPECT_EQ(bpfmap_ringbuf_output(r.m, "x", 1, 4), -EINVAL);

	std::vector<size_t> sizes;
	RingConsumer cons;
	ASSERT_EQ(RingConsumer::open(
			  r.fd,
			  [&](const void *, size_t n) {
				  sizes.push_back(n);
				  return 0;
			  },
			  cons),
		  0);
	EXPECT_EQ(cons.consume(), 2) << "the discarded record is skipped";
	EXPECT_EQ(sizes, (std::vector<size_t>{13, 8}));
	EXPECT_EQ(*mm.cons, mm.prod()) << "the consumer position is the kernel's consumer page";
}

// A consumer's place in the ring's wait queue (16 places) moves with it and is given back
// when the consumer that holds it goes. Assigning over a consumer hands its place to the
// consumer moved from, which gives it back when it goes.
TEST(Ringbuf, ConsumersCarryTheirWaitPlaceAndGiveItBack)
{
	ring r(PAGE);
	ASSERT_NE(r.m, nullptr);
	int seen = 0;
	auto count = [&](const void *, size_t) {
		seen++;
		return 0;
	};
	std::vector<RingConsumer> all(16);
	for (RingConsumer &c : all)
		ASSERT_EQ(RingConsumer::open(r.fd, count, c), 0);
	RingConsumer extra;
	EXPECT_EQ(RingConsumer::open(r.fd, count, extra), EBUSY);

	{
		RingConsumer moved(std::move(all[0])); // the place moves, none is freed
		EXPECT_EQ(RingConsumer::open(r.fd, count, extra), EBUSY);
		all[1] = std::move(moved);
		EXPECT_EQ(RingConsumer::open(r.fd, count, extra), EBUSY);
	}
	ASSERT_EQ(RingConsumer::open(r.fd, count, extra), 0) << "all[1]'s old place came back";
	EXPECT_EQ(bpfmap_ringbuf_output(r.m, "ab", 2, 0), 0);
	EXPECT_EQ(all[1].consume(), 1) << "the moved consumer still reads the ring";
	EXPECT_EQ(seen, 1);

	all.clear();
	RingConsumer again;
	EXPECT_EQ(RingConsumer::open(r.fd, count, again), 0) << "destroyed consumers left";
}

TEST(Ringbuf, QueryFullRingAndWrapAround)
{
	const uint32_t size = PAGE;
	ring r(size);
	ASSERT_NE(r.m, nullptr);
	EXPECT_EQ(bpfmap_ringbuf_query(r.m, 1), size);
	EXPECT_EQ(bpfmap_ringbuf_reserve(r.m, size, 0), nullptr) << "a record never fills the ring";
	// Fill: 1000-byte records (1008 with the header) until there is no room.
	std::vector<char> blob(1000, 'a');
	int stored = 0;
	while (bpfmap_ringbuf_output(r.m, blob.data(), blob.size(), 0) == 0)
		stored++;
	EXPECT_EQ(stored, 4); // 4 * 1008 = 4032; a fifth would pass size - 1
	EXPECT_EQ(bpfmap_ringbuf_output(r.m, blob.data(), blob.size(), 0), -EAGAIN);
	EXPECT_EQ(bpfmap_ringbuf_query(r.m, 0), 4 * 1008u); // AVAIL_DATA
	EXPECT_EQ(bpfmap_ringbuf_query(r.m, 3), 4 * 1008u); // PROD_POS
	EXPECT_EQ(bpfmap_ringbuf_query(r.m, 2), 0u);	    // CONS_POS
	EXPECT_EQ(bpfmap_ringbuf_query(r.m, 99), 0u);
	std::vector<std::string> got;
	RingConsumer cons;
	ASSERT_EQ(RingConsumer::open(
			  r.fd,
			  [&](const void *d, size_t n) {
				  got.emplace_back(static_cast<const char *>(d), n);
				  return 0;
			  },
			  cons),
		  0);
	EXPECT_EQ(cons.consume(), 4);
	EXPECT_EQ(bpfmap_ringbuf_query(r.m, 0), 0u);
	// The next record starts at 4032 and wraps past the end: still contiguous, both in
	// the producer's view and in the consumer's.
	std::string pattern(600, '\0');
	for (size_t i = 0; i < pattern.size(); i++)
		pattern[i] = static_cast<char>('A' + i % 26);
	auto *rec = static_cast<char *>(bpfmap_ringbuf_reserve(r.m, pattern.size(), 0));
	ASSERT_NE(rec, nullptr);
	memcpy(rec, pattern.data(), pattern.size());
	bpfmap_ringbuf_submit(rec, 0);
	ring_mmap mm(r.fd, size);
	ASSERT_TRUE(mm.prod_page);
	EXPECT_EQ(memcmp(mm.data() + 4032 + 8, pattern.data(), pattern.size()), 0);
	got.clear();
	EXPECT_EQ(cons.consume(), 1);
	ASSERT_EQ(got.size(), 1u);
	EXPECT_EQ(got[0], pattern);
}

TEST(Ringbuf, OutOfOrderCommitsAreSeenInReservationOrder)
{
	ring r(4 * PAGE);
	ASSERT_NE(r.m, nullptr);
	std::vector<int> seen;
	RingConsumer cons;
	ASSERT_EQ(RingConsumer::open(
			  r.fd,
			  [&](const void *d, size_t) {
				  int v;
				  memcpy(&v, d, 4);
				  seen.push_back(v);
				  return 0;
			  },
			  cons),
		  0);
	auto *a = static_cast<int *>(bpfmap_ringbuf_reserve(r.m, 4, 0));
	auto *b = static_cast<int *>(bpfmap_ringbuf_reserve(r.m, 4, 0));
	ASSERT_TRUE(a && b);
	*a = 1;
	*b = 2;
	bpfmap_ringbuf_submit(b, 0);
	EXPECT_EQ(cons.consume(), 0) << "the older record is still being written";
	bpfmap_ringbuf_submit(a, 0);
	EXPECT_EQ(cons.consume(), 2);
	EXPECT_EQ(seen, (std::vector<int>{1, 2}));
}

TEST(Ringbuf, ProducersWakeASleepingConsumerAndOnlyThen)
{
	ring r(16 * PAGE);
	ASSERT_NE(r.m, nullptr);
	std::atomic<int> seen{0};
	RingConsumer cons;
	ASSERT_EQ(RingConsumer::open(
			  r.fd,
			  [&](const void *, size_t) {
				  seen++;
				  return 0;
			  },
			  cons),
		  0);
	EXPECT_EQ(cons.poll(20), 0) << "nothing to read: the wait times out";
	// NO_WAKEUP: the record is there, but the consumer's fd stays quiet.
	uint64_t v = 7;
	ASSERT_EQ(bpfmap_ringbuf_output(r.m, &v, 8, 1), 0);
	pollfd p{cons.fd(), POLLIN, 0};
	EXPECT_EQ(::poll(&p, 1, 0), 0);
	EXPECT_EQ(cons.consume(), 1);
	// Caught up: a default commit wakes; the consumer has read everything before it.
	ASSERT_EQ(bpfmap_ringbuf_output(r.m, &v, 8, 0), 0);
	EXPECT_EQ(::poll(&p, 1, 1000), 1);
	// Behind: a second record does not wake again (the consumer has not read the first).
	EXPECT_EQ(cons.consume(), 1);
	ASSERT_EQ(bpfmap_ringbuf_output(r.m, &v, 8, 0), 0);
	ASSERT_EQ(bpfmap_ringbuf_output(r.m, &v, 8, 0), 0);
	ASSERT_EQ(::poll(&p, 1, 1000), 1);
	EXPECT_EQ(cons.consume(), 2);
	EXPECT_EQ(::poll(&p, 1, 0), 0) << "consume() reads the wakes away";
	// FORCE_WAKEUP wakes even while the consumer is behind.
	ASSERT_EQ(bpfmap_ringbuf_output(r.m, &v, 8, 1), 0);
	ASSERT_EQ(bpfmap_ringbuf_output(r.m, &v, 8, 2), 0);
	EXPECT_EQ(::poll(&p, 1, 1000), 1);
	EXPECT_EQ(cons.consume(), 2);
	// A thread that produces while the consumer sleeps in poll().
	std::thread t([&] {
		usleep(20000);
		uint64_t x = 9;
		bpfmap_ringbuf_output(r.m, &x, 8, 0);
	});
	int n = cons.poll(5000);
	t.join();
	EXPECT_EQ(n, 1);
	EXPECT_EQ(seen.load(), 7);
}

// Sleep in poll(poll_ms) until every producer's `per` records came (within a generous
// bound), reap the producer processes, each of which must exit 0, then take what is left.
void consume_until_producers_exit(RingConsumer &cons, const ordered_records &recs, int per,
				  int poll_ms, const std::vector<pid_t> &pids)
{
	for (int i = 0; i < 100000 && !recs.done(per); i++)
		cons.poll(poll_ms);
	for (pid_t pid : pids) {
		int st = 0;
		waitpid(pid, &st, 0);
		EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "producer status " << st;
	}
	cons.consume();
}

// Producer processes write (producer, seq, payload) records of varying sizes as fast as
// they can, retrying when the ring is full; one consumer sleeps in poll() between
// batches. Every record arrives exactly once, intact, and in order per producer.
TEST(Ringbuf, ManyProducerProcessesOneConsumer)
{
	const int producers = 4, per = 20000 / (1 + 4 * (SCALE > 1));
	ring r(16 * PAGE);
	ASSERT_NE(r.m, nullptr);
	ordered_records recs(producers, [](uint32_t who, uint32_t seq) -> size_t {
		return 8 + (seq * 7 + who) % 200;
	});
	RingConsumer cons;
	ASSERT_EQ(RingConsumer::open(r.fd, recs.callback(), cons), 0);
	std::vector<pid_t> pids;
	for (int w = 0; w < producers; w++) {
		pid_t pid = fork();
		if (pid == 0) {
			std::vector<unsigned char> buf(8 + 200);
			for (uint32_t seq = 0; seq < static_cast<uint32_t>(per); seq++) {
				size_t n = recs.size_of(static_cast<uint32_t>(w), seq);
				ordered_records::fill(buf.data(), static_cast<uint32_t>(w), seq, n);
				while (bpfmap_ringbuf_output(r.m, buf.data(), n, 0) == -EAGAIN)
					sched_yield();
			}
			_exit(0);
		}
		pids.push_back(pid);
	}
	consume_until_producers_exit(cons, recs, per, 1000, pids);
	recs.expect_all(per);
}

TEST(Ringbuf, MmapRules)
{
	ring r(4 * PAGE);
	ASSERT_GE(r.fd, 0);
	// Writable: the consumer page alone.
	void *p = mmap(nullptr, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd, 0);
	EXPECT_EQ(p, MAP_FAILED);
	EXPECT_EQ(errno, EPERM);
	p = mmap(nullptr, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd, PAGE);
	EXPECT_EQ(p, MAP_FAILED);
	EXPECT_EQ(errno, EPERM);
	// Read-only: anything within the two position pages and the data twice.
	p = mmap(nullptr, 2 * PAGE + 8 * PAGE, PROT_READ, MAP_SHARED, r.fd, 0);
	ASSERT_NE(p, MAP_FAILED);
	EXPECT_EQ(mprotect(p, PAGE, PROT_READ | PROT_WRITE), -1)
		<< "no write through a read-only mapping";
	EXPECT_EQ(errno, EACCES);
	munmap(p, 10 * PAGE);
	p = mmap(nullptr, 11 * PAGE, PROT_READ, MAP_SHARED, r.fd, 0);
	EXPECT_EQ(p, MAP_FAILED);
	EXPECT_EQ(errno, EINVAL);
	p = mmap(nullptr, PAGE, PROT_READ, MAP_SHARED, r.fd, 9 * PAGE);
	ASSERT_NE(p, MAP_FAILED) << "the last page of the second copy";
	munmap(p, PAGE);
}

// A producer that dies between reserve and submit leaves a BUSY record; the consumer
// finds its owner gone, discards it and goes on to the records behind it.
TEST(Ringbuf, ARecordWhoseProducerDiedIsDiscarded)
{
	ring r(4 * PAGE);
	ASSERT_NE(r.m, nullptr);
	pid_t pid = fork();
	if (pid == 0) {
		void *rec = bpfmap_ringbuf_reserve(r.m, 100, 0);
		_exit(rec ? 0 : 1); // never submitted
	}
	int st = 0;
	waitpid(pid, &st, 0);
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	uint64_t v = 42;
	ASSERT_EQ(bpfmap_ringbuf_output(r.m, &v, 8, 0), 0);
	std::vector<uint64_t> got;
	RingConsumer cons;
	ASSERT_EQ(RingConsumer::open(
			  r.fd,
			  [&](const void *d, size_t n) {
				  uint64_t x = 0;
				  memcpy(&x, d, std::min<size_t>(n, 8));
				  got.push_back(x);
				  return 0;
			  },
			  cons),
		  0);
	EXPECT_EQ(cons.consume(), 0) << "stuck behind the dead producer's record";
	EXPECT_EQ(cons.poll(5000), 1);
	EXPECT_EQ(got, (std::vector<uint64_t>{42}));
	ring_mmap mm(r.fd, 4 * PAGE);
	ASSERT_TRUE(mm.prod_page);
	EXPECT_EQ(mm.len_at(0), 100u | DISCARD);
}

// A live producer's record is never taken away, however long it stays BUSY; and at most
// 128 records of a ring may be reserved and not yet committed.
TEST(Ringbuf, ALiveProducersRecordWaitsAndReservationsInFlightAreCapped)
{
	ring r(64 * PAGE);
	ASSERT_NE(r.m, nullptr);
	std::vector<void *> held;
	for (int i = 0; i < 128; i++) {
		void *rec = bpfmap_ringbuf_reserve(r.m, 8, 0);
		ASSERT_NE(rec, nullptr) << i;
		held.push_back(rec);
	}
	EXPECT_EQ(bpfmap_ringbuf_reserve(r.m, 8, 0), nullptr);
	int seen = 0;
	RingConsumer cons;
	ASSERT_EQ(RingConsumer::open(
			  r.fd,
			  [&](const void *, size_t) {
				  seen++;
				  return 0;
			  },
			  cons),
		  0);
	EXPECT_EQ(cons.poll(120), 0);
	for (void *rec : held)
		bpfmap_ringbuf_submit(rec, 0);
	EXPECT_EQ(cons.consume(), 128);
	EXPECT_NE(bpfmap_ringbuf_reserve(r.m, 8, 0), nullptr)
		<< "slots free again after the commits";
}

// Producers SIGKILLed at random points (holding the reservation lock, between reserve and
// submit, anywhere): whatever they committed arrives intact and in order, and the consumer
// never stays stuck behind what they left.
TEST(Ringbuf, KilledProducersNeverStopTheConsumer)
{
	ring r(8 * PAGE);
	ASSERT_NE(r.m, nullptr);
	long bad = 0, got = 0;
	int64_t last = -1;
	RingConsumer cons;
	ASSERT_EQ(RingConsumer::open(
			  r.fd,
			  [&](const void *d, size_t n) {
				  int64_t seq;
				  memcpy(&seq, d, 8);
				  bool ok = n == 8 + static_cast<size_t>(seq % 300) && seq > last;
				  for (size_t i = 8; ok && i < n; i++)
					  ok = static_cast<const unsigned char *>(d)[i] ==
					       static_cast<unsigned char>(seq * 31 + i);
				  bad += !ok;
				  last = seq;
				  got++;
				  return 0;
			  },
			  cons),
		  0);
	int64_t base = 0;
	for (int round = 0; round < 8; round++, base += 1 << 30) {
		pid_t pid = fork();
		if (pid == 0) {
			for (int64_t seq = base;; seq++) {
				size_t n = 8 + static_cast<size_t>(seq % 300);
				auto *rec = static_cast<unsigned char *>(
					bpfmap_ringbuf_reserve(r.m, n, 0));
				if (!rec) {
					sched_yield();
					seq--;
					continue;
				}
				memcpy(rec, &seq, 8);
				for (size_t i = 8; i < n; i++)
					rec[i] = static_cast<unsigned char>(seq * 31 + i);
				bpfmap_ringbuf_submit(rec, 0);
			}
		}
		// Consume while it produces, then kill it wherever it is.
		for (int i = 0; i < 20; i++)
			cons.poll(1);
		kill(pid, SIGKILL);
		waitpid(pid, nullptr, 0);
		for (int i = 0; i < 200 && bpfmap_ringbuf_query(r.m, 0) != 0; i++)
			cons.poll(100);
		ASSERT_EQ(bpfmap_ringbuf_query(r.m, 0), 0u) << "round " << round << ": stuck";
	}
	EXPECT_EQ(bad, 0);
	EXPECT_GT(got, 0);
	// The ring still works for a new producer.
	uint64_t v = 1;
	EXPECT_EQ(bpfmap_ringbuf_output(r.m, &v, 8, 0), 0);
	EXPECT_EQ(cons.consume(), 1);
}

// A consumer that only ever sleeps in poll() is woken too (it arms itself to sleep), and
// a producer's commit while it is awake costs no wake.
TEST(Ringbuf, PollOnlyConsumerIsWoken)
{
	ring r(16 * PAGE);
	ASSERT_NE(r.m, nullptr);
	int seen = 0;
	RingConsumer cons;
	ASSERT_EQ(RingConsumer::open(
			  r.fd,
			  [&](const void *, size_t) {
				  seen++;
				  return 0;
			  },
			  cons),
		  0);
	for (int round = 0; round < 20; round++) {
		std::thread t([&] {
			usleep(round % 2 ? 5000 : 0);
			uint64_t x = 9;
			bpfmap_ringbuf_output(r.m, &x, 8, 0);
		});
		int n = 0;
		for (int i = 0; i < 10 && n == 0; i++)
			n = cons.poll(1000);
		t.join();
		EXPECT_EQ(n, 1) << "round " << round;
	}
	EXPECT_EQ(seen, 20);
}

TEST(Ringbuf, ThreadsProduceWhileAThreadConsumes)
{
	const int producers = 4, per = 20000;
	ring r(8 * PAGE);
	ASSERT_NE(r.m, nullptr);
	ordered_records recs(producers,
			     [](uint32_t, uint32_t seq) -> size_t { return 8 + seq % 24; });
	RingConsumer cons;
	ASSERT_EQ(RingConsumer::open(r.fd, recs.callback(), cons), 0);
	std::thread consumer([&] {
		for (int i = 0; i < 200000 && recs.got < static_cast<long>(producers) * per; i++)
			cons.poll(100);
	});
	std::vector<std::thread> threads;
	for (int w = 0; w < producers; w++)
		threads.emplace_back([&, w] {
			for (uint32_t seq = 0; seq < static_cast<uint32_t>(per); seq++) {
				size_t n = recs.size_of(static_cast<uint32_t>(w), seq);
				unsigned char *rec;
				while (!(rec = static_cast<unsigned char *>(
						 bpfmap_ringbuf_reserve(r.m, n, 0))))
					sched_yield();
				ordered_records::fill(rec, static_cast<uint32_t>(w), seq, n);
				bpfmap_ringbuf_submit(rec, 0);
			}
		});
	for (auto &t : threads)
		t.join();
	consumer.join();
	recs.expect_all(per);
}

// Producers started as separate programs (tests/pin_peer), opening the ring by its pin: their
// records reach this process's consumer, each exactly once and in order.
TEST(Ringbuf, SeparatelyStartedProducersOpenThePin)
{
	ring r(4 * PAGE);
	ASSERT_NE(r.m, nullptr);
	std::string pin = "/sys/fs/bpf/bpfmap-test-ring-" + std::to_string(getpid());
	u::bpf_attr a{};
	a.obj.pathname = ptr(pin.c_str());
	a.obj.bpf_fd = static_cast<uint32_t>(r.fd);
	ASSERT_EQ(sys(u::OBJ_PIN, a), 0);
	const int peers = 3, per = 5000;
	ordered_records recs(peers, [](uint32_t, uint32_t) -> size_t { return 8; }); // pin_peer's
	RingConsumer cons;
	ASSERT_EQ(RingConsumer::open(r.fd, recs.callback(), cons), 0);
	std::vector<pid_t> pids;
	for (int i = 0; i < peers; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			std::string id = std::to_string(i), count = std::to_string(per);
			execl(PIN_PEER, PIN_PEER, "ring", pin.c_str(), id.c_str(), count.c_str(),
			      nullptr);
			_exit(127);
		}
		pids.push_back(pid);
	}
	consume_until_producers_exit(cons, recs, per, 100, pids);
	unlink((std::string(getenv("BPFMAP_PIN_ROOT")) + pin.substr(strlen("/sys/fs/bpf")))
		       .c_str());
	recs.expect_all(per);
}

// ---- Who may submit, and what a reaped record's late submit does -------------------------

// A record belongs to the process that reserved it, not to the thread: a thread reserves
// two records and exits; the records wait (the consumer does not take them for a dead
// producer's), then other threads submit one and discard the other.
TEST(Ringbuf, AnyThreadSubmitsAfterTheReservingThreadExited)
{
	ring r(4 * PAGE);
	ASSERT_NE(r.m, nullptr);
	char *a = nullptr, *b = nullptr;
	std::thread([&] {
		a = static_cast<char *>(bpfmap_ringbuf_reserve(r.m, 16, 0));
		b = static_cast<char *>(bpfmap_ringbuf_reserve(r.m, 24, 0));
	}).join();
	ASSERT_TRUE(a && b);
	memcpy(a, "from a dead thread", 16);
	std::vector<std::string> got;
	RingConsumer cons;
	ASSERT_EQ(RingConsumer::open(
			  r.fd,
			  [&](const void *d, size_t n) {
				  got.emplace_back(static_cast<const char *>(d), n);
				  return 0;
			  },
			  cons),
		  0);
	EXPECT_EQ(cons.poll(150), 0) << "the records are still being written";
	ring_mmap mm(r.fd, 4 * PAGE);
	ASSERT_TRUE(mm.prod_page);
	EXPECT_EQ(mm.len_at(0), 16u | BUSY) << "not discarded: its process lives";
	bpfmap_ringbuf_submit(a, 0); // this thread's TLS knows nothing of it
	EXPECT_EQ(cons.consume(), 1);
	ASSERT_EQ(got.size(), 1u);
	EXPECT_EQ(got[0], std::string("from a dead thread", 16));
	std::thread([&] { bpfmap_ringbuf_discard(b, 0); }).join();
	EXPECT_EQ(mm.len_at(rec_len(16)), 24u | DISCARD);
	EXPECT_EQ(cons.consume(), 0);
	EXPECT_EQ(bpfmap_ringbuf_query(r.m, 0), 0u);
	// Submitting again changes nothing.
	bpfmap_ringbuf_submit(a, 0);
	bpfmap_ringbuf_submit(b, 0);
	EXPECT_EQ(mm.len_at(0), 16u);
	EXPECT_EQ(mm.len_at(rec_len(16)), 24u | DISCARD);
}

// A record taken for a dead producer's (its owner slot made to name a process that does
// not exist, as a corrupt slot or a sharer the liveness check misjudges would) is
// discarded by the consumer. Its late submit, from the reserving thread or another, then
// changes nothing: the header is not set BUSY again behind the consumer, later
// reservations go on round the ring, and a record another process now holds at the same
// offset is not committed by it.
TEST(Ringbuf, ASubmitAfterTheRecordWasReapedChangesNothing)
{
	const uint32_t size = 4 * PAGE;
	ring r(size);
	ASSERT_NE(r.m, nullptr);
	raw_ring raw(r.fd);
	ASSERT_TRUE(raw.p);
	long got = 0;
	RingConsumer cons;
	ASSERT_EQ(RingConsumer::open(
			  r.fd,
			  [&](const void *, size_t) {
				  got++;
				  return 0;
			  },
			  cons),
		  0);
	uint64_t v = 1;
	ASSERT_EQ(bpfmap_ringbuf_output(r.m, &v, 8, 0), 0);
	ASSERT_EQ(cons.consume(), 1);
	const uint64_t pos = rec_len(8);
	auto *rec = static_cast<char *>(bpfmap_ringbuf_reserve(r.m, 100, 0));
	ASSERT_NE(rec, nullptr);
	char *tgid = raw.owner_tgid(pos, static_cast<uint32_t>(getpid()));
	ASSERT_NE(tgid, nullptr) << "the record's owner slot";
	raw_ring::put32(tgid, 0x7fffffff); // no such process
	EXPECT_EQ(cons.poll(200), 0);
	EXPECT_EQ(raw_ring::get32(raw.hdr(pos)), 100u | DISCARD) << "reaped";
	EXPECT_EQ(bpfmap_ringbuf_query(r.m, 0), 0u) << "the consumer went past it";
	bpfmap_ringbuf_submit(rec, 0);
	EXPECT_EQ(raw_ring::get32(raw.hdr(pos)), 100u | DISCARD)
		<< "the late submit changed the header";
	std::thread([&] { bpfmap_ringbuf_submit(rec, 0); }).join();
	EXPECT_EQ(raw_ring::get32(raw.hdr(pos)), 100u | DISCARD)
		<< "the late submit changed the header";
	// Round the ring twice: every reservation still finds room once consumed.
	got = 0;
	std::vector<char> blob(500, 'x');
	for (int i = 0; i < 2 * static_cast<int>(size / rec_len(500)); i++) {
		ASSERT_EQ(bpfmap_ringbuf_output(r.m, blob.data(), blob.size(), 0), 0) << i;
		ASSERT_EQ(cons.consume(), 1) << i;
	}
	// Bring the producer position to the reaped record's offset, have another process
	// reserve there and hold it, and submit the old record again from here.
	uint64_t prod = bpfmap_ringbuf_query(r.m, 3);
	uint64_t target = (prod & ~uint64_t{size - 1}) + size + pos;
	while (target - prod > rec_len(500) + rec_len(8)) {
		ASSERT_EQ(bpfmap_ringbuf_output(r.m, blob.data(), blob.size(), 0), 0);
		cons.consume();
		prod = bpfmap_ringbuf_query(r.m, 3);
	}
	while (prod != target) {
		uint64_t gap = target - prod;
		ASSERT_GE(gap, 8u);
		uint64_t n = gap - 8 >= rec_len(8) ? 8 : gap - 8;
		ASSERT_EQ(bpfmap_ringbuf_output(r.m, blob.data(), n, 0), 0);
		cons.consume();
		prod = bpfmap_ringbuf_query(r.m, 3);
	}
	int to_child[2], to_parent[2];
	ASSERT_EQ(pipe(to_child), 0);
	ASSERT_EQ(pipe(to_parent), 0);
	pid_t pid = fork();
	if (pid == 0) {
		auto *mine = static_cast<char *>(bpfmap_ringbuf_reserve(r.m, 100, 0));
		char c = mine == rec ? 'y' : 'n';
		if (mine)
			memset(mine, 'c', 100);
		if (write(to_parent[1], &c, 1) != 1 || read(to_child[0], &c, 1) != 1)
			_exit(2);
		bpfmap_ringbuf_submit(mine, 0);
		_exit(0);
	}
	char c = 0;
	ASSERT_EQ(read(to_parent[0], &c, 1), 1);
	EXPECT_EQ(c, 'y') << "the other process's record is at the reaped one's address";
	bpfmap_ringbuf_submit(rec, 0);
	std::thread([&] { bpfmap_ringbuf_submit(rec, 0); }).join();
	EXPECT_EQ(raw_ring::get32(raw.hdr(pos)), 100u | BUSY)
		<< "committed another process's record";
	EXPECT_EQ(cons.consume(), 0);
	ASSERT_EQ(write(to_child[1], &c, 1), 1);
	int st = 0;
	waitpid(pid, &st, 0);
	EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	EXPECT_EQ(cons.consume(), 1) << "the other process's submit";
	EXPECT_EQ(bpfmap_ringbuf_query(r.m, 0), 0u);
	for (int fd : {to_child[0], to_child[1], to_parent[0], to_parent[1]})
		close(fd);
}
