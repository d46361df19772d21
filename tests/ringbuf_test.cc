// BPF_MAP_TYPE_RINGBUF: records and their headers as the kernel lays them out (read here
// through mmap() of the map fd, as libbpf reads them), wrap-around, discard, a full ring,
// query, commits out of order, waking a sleeping consumer, and producers in several
// processes with one consumer. Who may submit (any thread of the reserving process; a
// reaped record's late submit changes nothing), one drainer at a time, and what a corrupt
// or scribbled region does (errnos, never a crash or a hang). Creation and command errnos
// are compared with the kernel in kernel_diff_test.
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

// A ring's file as it is, mapped past the interposed mmap() (which shows the kernel's page
// layout): [consumer page][producer page][data][header page]. For writing what a corrupt
// or hostile process could write there.
struct raw_ring {
	char *p = nullptr;
	size_t len = 0;

	explicit raw_ring(int fd)
	{
		struct stat st;
		if (fstat(fd, &st) != 0)
			return;
		len = static_cast<size_t>(st.st_size);
		void *m = reinterpret_cast<void *>(
			syscall(SYS_mmap, nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
		if (m != MAP_FAILED)
			p = static_cast<char *>(m);
	}
	~raw_ring()
	{
		if (p)
			syscall(SYS_munmap, p, len);
	}
	static void put64(char *at, uint64_t v) { __atomic_store_n(reinterpret_cast<uint64_t *>(at), v, __ATOMIC_RELAXED); }
	static void put32(char *at, uint32_t v) { __atomic_store_n(reinterpret_cast<uint32_t *>(at), v, __ATOMIC_RELAXED); }
	static uint64_t get64(const char *at) { return __atomic_load_n(reinterpret_cast<const uint64_t *>(at), __ATOMIC_RELAXED); }
	static uint32_t get32(const char *at) { return __atomic_load_n(reinterpret_cast<const uint32_t *>(at), __ATOMIC_RELAXED); }
	char *cons_pos() const { return p; }
	char *busy() const { return p + 8; } // USER_RINGBUF's drain word
	char *prod_pos() const { return p + PAGE; }
	char *data() const { return p + 2 * PAGE; }
	size_t data_size() const { return len - 3 * PAGE; }
	char *hdr(uint64_t pos) const { return data() + (pos & (data_size() - 1)); }
	// The family's control block in the header page (the lock is its first 64 bytes).
	char *ctl() const { return p + len - PAGE + 256; }
	char *ctl_end() const { return p + len; }
	// The owner slot's process word for the record at pos reserved by process pid: the
	// slot is {pos + 1 (8 bytes), process (4 bytes)}, found by its contents.
	char *owner_tgid(uint64_t pos, uint32_t pid) const
	{
		for (char *q = ctl() + 64; q + 12 <= ctl_end(); q += 8)
			if (get64(q) == pos + 1 && get32(q + 8) == pid)
				return q + 8;
		return nullptr;
	}
};

// Run fn in a forked child under an alarm: true if it returned (exit 0) within
// limit_s, false if it died of a signal (a crash, or the alarm: a hang) or failed.
template <typename F> bool survives_in_child(F &&fn, unsigned limit_s, int *status = nullptr)
{
	pid_t pid = fork();
	if (pid == 0) {
		alarm(limit_s);
		_exit(fn() ? 0 : 1);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	if (status)
		*status = st;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

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
	ASSERT_EQ(RingConsumer::open(r.fd, [&](const void *d, size_t n) {
		got.emplace_back(static_cast<const char *>(d), n);
		return 0;
	}, cons), 0);
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
	ASSERT_EQ(RingConsumer::open(r.fd, [&](const void *, size_t) { got++; return 0; }, cons), 0);
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
	EXPECT_EQ(raw_ring::get32(raw.hdr(pos)), 100u | DISCARD) << "the late submit changed the header";
	std::thread([&] { bpfmap_ringbuf_submit(rec, 0); }).join();
	EXPECT_EQ(raw_ring::get32(raw.hdr(pos)), 100u | DISCARD) << "the late submit changed the header";
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
	EXPECT_EQ(raw_ring::get32(raw.hdr(pos)), 100u | BUSY) << "committed another process's record";
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
	auto *dc = static_cast<drain_check *>(
		mmap(nullptr, sizeof(drain_check), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
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
					long r = bpfmap_user_ringbuf_drain(m, on_checked_drain, dc, 0);
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
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), 2) << "the dead drainer never finished its record";
	EXPECT_EQ(d.recs, (std::vector<std::string>{"aaaaaaaa", "bbbbbbbb"}));
	raw_ring raw(fd);
	ASSERT_TRUE(raw.p);
	EXPECT_EQ(raw_ring::get64(raw.busy()), 0u);
	raw_ring::put64(raw.busy(), uint64_t{0x7fffffff} << 32 | 12345);
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), 0) << "a corrupt word is no drainer";
	raw_ring::put64(raw.busy(), uint64_t{1} << 32 | 1); // init: alive
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), -EBUSY);
	raw_ring::put64(raw.busy(), 0);
	close(pfd[0]);
	close(pfd[1]);
	bpfmap_map_put(m);
	close(fd);
}

// ---- A corrupt region gives errnos, never a crash or a hang -------------------------------

// Positions and lengths no producer wrote: the consumer says EFAULT instead of handing its
// callback bytes outside the ring, reserve fails, and poll, epoll and the reaper return.
TEST(Ringbuf, CorruptPositionsAndLengthsGiveErrnos)
{
	const uint32_t size = 4 * PAGE;
	ring r(size);
	ASSERT_NE(r.m, nullptr);
	raw_ring raw(r.fd);
	ASSERT_TRUE(raw.p);
	size_t biggest = 0;
	RingConsumer cons;
	ASSERT_EQ(RingConsumer::open(r.fd, [&](const void *d, size_t n) {
		volatile char sum = 0;
		for (size_t i = 0; i < n; i++) // touch every byte we are given
			sum = static_cast<char>(sum + static_cast<const char *>(d)[i]);
		biggest = std::max(biggest, n);
		return 0;
	}, cons), 0);
	uint64_t v = 3;
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(bpfmap_ringbuf_output(r.m, &v, 8, 0), 0);
	// The producer position far ahead of the consumer, or not 8-aligned.
	raw_ring::put64(raw.prod_pos(), 5 * size);
	EXPECT_EQ(cons.consume(), -EFAULT);
	EXPECT_EQ(cons.poll(50), -EFAULT);
	EXPECT_EQ(bpfmap_ringbuf_reserve(r.m, 8, 0), nullptr);
	EXPECT_EQ(bpfmap_ringbuf_output(r.m, &v, 8, 0), -EAGAIN);
	raw_ring::put64(raw.prod_pos(), 3 * rec_len(8) + 4);
	EXPECT_EQ(cons.consume(), -EFAULT);
	EXPECT_EQ(bpfmap_ringbuf_reserve(r.m, 8, 0), nullptr);
	raw_ring::put64(raw.prod_pos(), 3 * rec_len(8));
	// A committed length past the producer position, or past the ring.
	raw_ring::put32(raw.hdr(0), 0x3fffffff);
	EXPECT_EQ(cons.consume(), -EFAULT);
	raw_ring::put32(raw.hdr(0), 41); // 56 bytes with the header: 8 more than there are
	EXPECT_EQ(cons.consume(), -EFAULT);
	raw_ring::put32(raw.hdr(0), 8);
	EXPECT_EQ(cons.consume(), 3);
	// A consumer position that is not 8-aligned.
	raw_ring::put64(raw.cons_pos(), 4);
	EXPECT_EQ(cons.consume(), -EFAULT);
	raw_ring::put64(raw.cons_pos(), 3 * rec_len(8));
	// A BUSY head with a corrupt length: the reaper, poll and epoll return.
	auto *rec = static_cast<char *>(bpfmap_ringbuf_reserve(r.m, 8, 0));
	ASSERT_NE(rec, nullptr);
	raw_ring::put32(raw.hdr(3 * rec_len(8)), 0xbfffffff);
	EXPECT_EQ(cons.poll(60), 0);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	ASSERT_GE(ep, 0);
	epoll_event ev{};
	ev.events = EPOLLIN;
	ev.data.u64 = 7;
	ASSERT_EQ(epoll_ctl(ep, EPOLL_CTL_ADD, r.fd, &ev), 0);
	epoll_event out[4];
	EXPECT_EQ(epoll_wait(ep, out, 4, 0), 1) << "readable while it holds data, as the kernel says";
	raw_ring::put64(raw.prod_pos(), ~uint64_t{0});
	EXPECT_GE(epoll_wait(ep, out, 4, 50), 0);
	raw_ring::put64(raw.cons_pos(), 12345);
	EXPECT_GE(epoll_wait(ep, out, 4, 50), 0);
	EXPECT_EQ(cons.poll(60), -EFAULT);
	// Put the positions back: the BUSY record's producer (this process) still commits it.
	raw_ring::put64(raw.cons_pos(), 3 * rec_len(8));
	raw_ring::put64(raw.prod_pos(), 4 * rec_len(8));
	raw_ring::put32(raw.hdr(3 * rec_len(8)), 8 | BUSY);
	bpfmap_ringbuf_submit(rec, 0);
	EXPECT_EQ(cons.consume(), 1);
	EXPECT_LE(biggest, size_t{8});
	close(ep);
}

// The header's page offset, which the kernel uses to find the ring from the record, is
// shared memory: overwritten, it must neither crash a commit nor send it elsewhere.
TEST(Ringbuf, ACorruptPageOffsetDoesNotMisdirectACommit)
{
	ring r(4 * PAGE);
	ASSERT_NE(r.m, nullptr);
	raw_ring raw(r.fd);
	ASSERT_TRUE(raw.p);
	int got = 0;
	RingConsumer cons;
	ASSERT_EQ(RingConsumer::open(r.fd, [&](const void *, size_t) { got++; return 0; }, cons), 0);
	uint64_t pos = 0;
	for (uint32_t bad : {0xffffffffu, 0u, 1u, 2u, 4u, 0x10000u}) {
		auto *rec = static_cast<char *>(bpfmap_ringbuf_reserve(r.m, 8, 0));
		ASSERT_NE(rec, nullptr);
		auto *other = static_cast<char *>(bpfmap_ringbuf_reserve(r.m, 8, 0));
		ASSERT_NE(other, nullptr);
		raw_ring::put32(raw.hdr(pos) + 4, bad);
		raw_ring::put32(raw.hdr(pos + rec_len(8)) + 4, bad);
		bpfmap_ringbuf_submit(rec, 0); // not this thread's last reservation
		std::thread([&] { bpfmap_ringbuf_submit(other, 0); }).join();
		EXPECT_EQ(cons.consume(), 2) << "pg_off " << bad;
		pos += 2 * rec_len(8);
	}
	EXPECT_EQ(got, 12);
}

namespace {
// Random words (zeros, all-ones, small numbers, random) over the ring's pages and its
// control block past the lock, as a hostile or broken process could write them.
void scribble_ring(const raw_ring &raw, std::mt19937_64 &rng, int words)
{
	size_t ctl_from = static_cast<size_t>(raw.ctl() + 64 - raw.p);
	for (int i = 0; i < words; i++) {
		size_t off;
		switch (rng() % 4) {
		case 0:
			off = rng() % 16; // the positions and the busy word
			break;
		case 1:
			off = PAGE + rng() % 16;
			break;
		case 2:
			off = ctl_from + rng() % (raw.len - ctl_from);
			break;
		default:
			off = 2 * PAGE + rng() % raw.data_size();
			break;
		}
		off &= ~size_t{7};
		uint64_t v;
		switch (rng() % 4) {
		case 0:
			v = 0;
			break;
		case 1:
			v = ~uint64_t{0};
			break;
		case 2:
			v = rng() % 64;
			break;
		default:
			v = rng();
			break;
		}
		raw_ring::put64(raw.p + off, v);
	}
}

// Every ring call a user makes, for about ms milliseconds; none may take over a second.
bool ring_calls_return(int fd, bpfmap_map *m, uint32_t type, int ms)
{
	auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
	auto slow = [](auto t0) { return std::chrono::steady_clock::now() - t0 > std::chrono::seconds(1); };
	RingConsumer cons;
	bpfmap::UserRingProducer uprod;
	bool user = type == USER_RINGBUF;
	if (user)
		bpfmap::UserRingProducer::open(fd, uprod);
	else
		RingConsumer::open(fd, [](const void *d, size_t n) {
			volatile char sum = 0;
			for (size_t i = 0; i < n; i++)
				sum = static_cast<char>(sum + static_cast<const char *>(d)[i]);
			return 0;
		}, cons);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	epoll_event ev{};
	ev.events = user ? EPOLLOUT : EPOLLIN;
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	uint64_t v = 0x5a5a;
	while (std::chrono::steady_clock::now() < until) {
		auto t0 = std::chrono::steady_clock::now();
		if (user) {
			int err;
			if (void *rec = uprod.reserve(8 + v % 64, &err)) {
				memset(rec, 1, 8);
				(v & 1) ? uprod.submit(rec) : uprod.discard(rec);
			}
			drained d;
			bpfmap_user_ringbuf_drain(m, on_drain, &d, 0);
			uprod.reserve_blocking(16, 2, &err);
		} else {
			if (void *rec = bpfmap_ringbuf_reserve(m, 8 + v % 64, 0)) {
				memset(rec, 1, 8);
				(v & 1) ? bpfmap_ringbuf_submit(rec, 0) : bpfmap_ringbuf_discard(rec, 0);
			}
			bpfmap_ringbuf_output(m, &v, sizeof(v), v % 3);
			cons.consume();
			cons.poll(1);
		}
		epoll_event out[2];
		epoll_wait(ep, out, 2, 1);
		for (uint64_t q = 0; q < 4; q++)
			bpfmap_ringbuf_query(m, q);
		if (slow(t0))
			return false;
		v = v * 6364136223846793005ull + 1442695040888963407ull;
	}
	close(ep);
	return true;
}
} // namespace

// Scribbling on a live ring (and a live user ring) while a child process runs every call
// on it: the child never dies of a signal nor stalls a call for more than a second.
TEST(Ringbuf, ScribbledRingsNeverCrashOrHang)
{
	for (uint32_t type : {RINGBUF, USER_RINGBUF}) {
		for (int round = 0; round < 4 * SCALE; round++) {
			int fd = map_create(type, 0, 0, 2 * PAGE);
			ASSERT_GE(fd, 0);
			bpfmap_map *m = bpfmap_map_get(fd);
			raw_ring raw(fd);
			ASSERT_TRUE(raw.p);
			pid_t pid = fork();
			if (pid == 0) {
				alarm(30);
				_exit(ring_calls_return(fd, m, type, 200) ? 0 : 1);
			}
			std::mt19937_64 rng(static_cast<uint64_t>(round) * 7919 + type);
			auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
			while (std::chrono::steady_clock::now() < until) {
				scribble_ring(raw, rng, 1 + static_cast<int>(rng() % 4));
				usleep(2000);
			}
			int st = 0;
			waitpid(pid, &st, 0);
			EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
				<< "type " << type << " round " << round << ": status " << st
				<< (WIFSIGNALED(st) ? " (signal " + std::to_string(WTERMSIG(st)) + ")" : "");
			bpfmap_map_put(m);
			close(fd);
		}
	}
}

// A user ring's positions that no producer or drainer wrote: our producer says EFAULT,
// the drain fails with the kernel's errno (or EFAULT), and nothing reads outside the ring.
TEST(UserRingbuf, CorruptPositionsGiveErrnos)
{
	int fd = map_create(USER_RINGBUF, 0, 0, PAGE);
	ASSERT_GE(fd, 0);
	bpfmap_map *m = bpfmap_map_get(fd);
	raw_ring raw(fd);
	ASSERT_TRUE(raw.p);
	bpfmap::UserRingProducer prod;
	ASSERT_EQ(bpfmap::UserRingProducer::open(fd, prod), 0);
	int err = 0;
	raw_ring::put64(raw.prod_pos(), 12);
	EXPECT_EQ(prod.reserve(8, &err), nullptr);
	EXPECT_EQ(err, EFAULT);
	raw_ring::put64(raw.prod_pos(), 3 * PAGE);
	EXPECT_EQ(prod.reserve(8, &err), nullptr);
	EXPECT_EQ(err, EFAULT);
	EXPECT_EQ(prod.reserve_blocking(8, 1000, &err), nullptr);
	EXPECT_EQ(err, EFAULT) << "not a wait for room that never comes";
	// The kernel drains what such a producer position covers (zero headers: empty
	// records), at most its sample limit per call; so do we.
	drained d;
	EXPECT_GE(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), 0);
	raw_ring::put64(raw.prod_pos(), 0);
	raw_ring::put64(raw.cons_pos(), 0);
	void *rec = prod.reserve(8, &err);
	ASSERT_NE(rec, nullptr);
	prod.submit(rec);
	raw_ring::put64(raw.cons_pos(), 4);
	raw_ring::put64(raw.prod_pos(), 16);
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), -EFAULT);
	raw_ring::put64(raw.cons_pos(), 0);
	EXPECT_EQ(bpfmap_user_ringbuf_drain(m, on_drain, &d, 0), 1);
	bpfmap_map_put(m);
	close(fd);
}
