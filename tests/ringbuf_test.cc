// BPF_MAP_TYPE_RINGBUF: records and their headers as the kernel lays them out (read here
// through mmap() of the map fd, as libbpf reads them), wrap-around, discard, a full ring,
// query, commits out of order, waking a sleeping consumer, and producers in several
// processes with one consumer. Creation and command errnos are compared with the kernel
// in kernel_diff_test.
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <thread>
#include <vector>

#include "bpfmap/ringbuf.hpp"
#include "test_util.h"

using namespace bpfmap::test;
using bpfmap::RingConsumer;
using bpfmap::RingProducer;

namespace {

constexpr uint32_t RINGBUF = 27;
constexpr size_t PAGE = 4096;
constexpr uint32_t BUSY = 1u << 31, DISCARD = 1u << 30;

// The ring as libbpf maps it: the consumer page writable, the producer page and the data
// (twice) read-only.
struct ring_mmap {
	size_t size;
	uint64_t *cons = nullptr;
	const char *prod_page = nullptr;

	ring_mmap(int fd, size_t sz) : size(sz)
	{
		void *c = mmap(nullptr, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		void *p = mmap(nullptr, PAGE + 2 * sz, PROT_READ, MAP_SHARED, fd, PAGE);
		if (c != MAP_FAILED)
			cons = static_cast<uint64_t *>(c);
		if (p != MAP_FAILED)
			prod_page = static_cast<const char *>(p);
	}
	~ring_mmap()
	{
		if (cons)
			munmap(cons, PAGE);
		if (prod_page)
			munmap(const_cast<char *>(prod_page), PAGE + 2 * size);
	}
	uint64_t prod() const { return __atomic_load_n(reinterpret_cast<const uint64_t *>(prod_page), __ATOMIC_ACQUIRE); }
	const char *data() const { return prod_page + PAGE; }
	uint32_t len_at(uint64_t pos) const
	{
		return __atomic_load_n(reinterpret_cast<const uint32_t *>(data() + (pos & (size - 1))), __ATOMIC_ACQUIRE);
	}
	uint32_t pg_off_at(uint64_t pos) const
	{
		uint32_t v;
		memcpy(&v, data() + (pos & (size - 1)) + 4, 4);
		return v;
	}
};

struct ring {
	int fd;
	bpfmap_map *m;
	explicit ring(uint32_t size) : fd(map_create(RINGBUF, 0, 0, size)), m(fd >= 0 ? bpfmap_map_get(fd) : nullptr) {}
	~ring()
	{
		bpfmap_map_put(m);
		if (fd >= 0)
			close(fd);
	}
};

uint64_t rec_len(uint64_t size) { return (size + 8 + 7) / 8 * 8; }

// Records several producers write: {producer, seq}, then bytes (seq + i) up to size_of(who,
// seq). check() is a consumer callback that counts each record and whether it arrived
// intact and in order for its producer.
struct ordered_records {
	std::vector<uint32_t> next;
	size_t (*size_of)(uint32_t who, uint32_t seq);
	long bad = 0, got = 0;

	ordered_records(int producers, size_t (*sz)(uint32_t, uint32_t)) : next(producers, 0), size_of(sz) {}

	static void fill(unsigned char *rec, uint32_t who, uint32_t seq, size_t n)
	{
		uint32_t v[2] = {who, seq};
		memcpy(rec, v, 8);
		for (size_t i = 8; i < n; i++)
			rec[i] = static_cast<unsigned char>(seq + i);
	}
	int check(const void *d, size_t n)
	{
		uint32_t v[2];
		memcpy(v, d, 8);
		bool ok = v[0] < next.size() && v[1] == next[v[0]] && n == size_of(v[0], v[1]);
		for (size_t i = 8; ok && i < n; i++)
			ok = static_cast<const unsigned char *>(d)[i] == static_cast<unsigned char>(v[1] + i);
		if (ok)
			next[v[0]]++;
		bad += !ok;
		got++;
		return 0;
	}
	RingConsumer::Callback callback()
	{
		return [this](const void *d, size_t n) { return check(d, n); };
	}
	bool done(int per) const { return got >= static_cast<long>(next.size()) * per || bad; }
	void expect_all(int per) const
	{
		EXPECT_EQ(bad, 0);
		EXPECT_EQ(got, static_cast<long>(next.size()) * per);
		for (size_t w = 0; w < next.size(); w++)
			EXPECT_EQ(next[w], static_cast<uint32_t>(per)) << "producer " << w;
	}
};

} // namespace

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
	ASSERT_EQ(RingConsumer::open(r.fd, [&](const void *, size_t n) { sizes.push_back(n); return 0; }, cons), 0);
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
	auto count = [&](const void *, size_t) { seen++; return 0; };
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
	ASSERT_EQ(RingConsumer::open(r.fd, [&](const void *d, size_t n) {
		got.emplace_back(static_cast<const char *>(d), n);
		return 0;
	}, cons), 0);
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
	ASSERT_EQ(RingConsumer::open(r.fd, [&](const void *d, size_t) {
		int v;
		memcpy(&v, d, 4);
		seen.push_back(v);
		return 0;
	}, cons), 0);
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
	ASSERT_EQ(RingConsumer::open(r.fd, [&](const void *, size_t) { seen++; return 0; }, cons), 0);
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
void consume_until_producers_exit(RingConsumer &cons, const ordered_records &recs, int per, int poll_ms,
				  const std::vector<pid_t> &pids)
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
	ordered_records recs(producers, [](uint32_t who, uint32_t seq) -> size_t { return 8 + (seq * 7 + who) % 200; });
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
	EXPECT_EQ(mprotect(p, PAGE, PROT_READ | PROT_WRITE), -1) << "no write through a read-only mapping";
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
	ASSERT_EQ(RingConsumer::open(r.fd, [&](const void *d, size_t n) {
		uint64_t x = 0;
		memcpy(&x, d, std::min<size_t>(n, 8));
		got.push_back(x);
		return 0;
	}, cons), 0);
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
	ASSERT_EQ(RingConsumer::open(r.fd, [&](const void *, size_t) { seen++; return 0; }, cons), 0);
	EXPECT_EQ(cons.poll(120), 0);
	for (void *rec : held)
		bpfmap_ringbuf_submit(rec, 0);
	EXPECT_EQ(cons.consume(), 128);
	EXPECT_NE(bpfmap_ringbuf_reserve(r.m, 8, 0), nullptr) << "slots free again after the commits";
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
	ASSERT_EQ(RingConsumer::open(r.fd, [&](const void *d, size_t n) {
		int64_t seq;
		memcpy(&seq, d, 8);
		bool ok = n == 8 + static_cast<size_t>(seq % 300) && seq > last;
		for (size_t i = 8; ok && i < n; i++)
			ok = static_cast<const unsigned char *>(d)[i] == static_cast<unsigned char>(seq * 31 + i);
		bad += !ok;
		last = seq;
		got++;
		return 0;
	}, cons), 0);
	int64_t base = 0;
	for (int round = 0; round < 8; round++, base += 1 << 30) {
		pid_t pid = fork();
		if (pid == 0) {
			for (int64_t seq = base;; seq++) {
				size_t n = 8 + static_cast<size_t>(seq % 300);
				auto *rec = static_cast<unsigned char *>(bpfmap_ringbuf_reserve(r.m, n, 0));
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
	ASSERT_EQ(RingConsumer::open(r.fd, [&](const void *, size_t) { seen++; return 0; }, cons), 0);
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

// ---- USER_RINGBUF --------------------------------------------------------------------------

namespace {
constexpr uint32_t USER_RINGBUF = 31;

struct drained {
	std::vector<std::string> recs;
	long stop_after = -1; // callback returns 1 at this record
	bpfmap_map *nested = nullptr;
	long nested_ret = 0;
};

long on_drain(const void *data, uint64_t size, void *ctx)
{
	auto *d = static_cast<drained *>(ctx);
	d->recs.emplace_back(static_cast<const char *>(data), size);
	if (d->nested)
		d->nested_ret = bpfmap_user_ringbuf_drain(d->nested, on_drain, nullptr, 0);
	return static_cast<long>(d->recs.size()) - 1 == d->stop_after ? 1 : 0;
}
} // namespace

TEST(UserRingbuf, ProducerAndDrain)
{
	int fd = map_create(USER_RINGBUF, 0, 0, 4 * PAGE);
	ASSERT_GE(fd, 0);
	bpfmap_map *m = bpfmap_map_get(fd);
	bpfmap::UserRingProducer prod;
	ASSERT_EQ(bpfmap::UserRingProducer::open(fd, prod), 0);
	RingProducer wrong;
	EXPECT_EQ(RingProducer::open(fd, wrong), EINVAL) << "a user ring takes no program-side records";
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
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), 2) << "stops after the record that returned 1";
	EXPECT_EQ(d.recs, (std::vector<std::string>{"aaa", "bbbb"}));
	d = drained{};
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), 2) << "the discarded record is skipped, not counted";
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
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), -EINVAL) << "producer_pos not 8-aligned";
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
TEST(Ringbuf, ThreadsProduceWhileAThreadConsumes)
{
	const int producers = 4, per = 20000;
	ring r(8 * PAGE);
	ASSERT_NE(r.m, nullptr);
	ordered_records recs(producers, [](uint32_t, uint32_t seq) -> size_t { return 8 + seq % 24; });
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
				while (!(rec = static_cast<unsigned char *>(bpfmap_ringbuf_reserve(r.m, n, 0))))
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
			execl(PIN_PEER, PIN_PEER, "ring", pin.c_str(), id.c_str(), count.c_str(), nullptr);
			_exit(127);
		}
		pids.push_back(pid);
	}
	consume_until_producers_exit(cons, recs, per, 100, pids);
	unlink((std::string(getenv("BPFMAP_PIN_ROOT")) + pin.substr(strlen("/sys/fs/bpf"))).c_str());
	recs.expect_all(per);
}
