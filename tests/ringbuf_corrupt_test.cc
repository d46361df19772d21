// Ring buffers whose region is corrupt or scribbled on (part of ringbuf_test): errnos,
// never a crash or a hang, and a commit never misdirected.
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
	ASSERT_EQ(RingConsumer::open(
			  r.fd,
			  [&](const void *d, size_t n) {
				  volatile char sum = 0;
				  for (size_t i = 0; i < n; i++) // touch every byte we are given
					  sum = static_cast<char>(sum +
								  static_cast<const char *>(d)[i]);
				  biggest = std::max(biggest, n);
				  return 0;
			  },
			  cons),
		  0);
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
	EXPECT_EQ(epoll_wait(ep, out, 4, 0), 1)
		<< "readable while it holds data, as the kernel says";
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
	ASSERT_EQ(RingConsumer::open(
			  r.fd,
			  [&](const void *, size_t) {
				  got++;
				  return 0;
			  },
			  cons),
		  0);
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
	auto slow = [](auto t0) {
		return std::chrono::steady_clock::now() - t0 > std::chrono::seconds(1);
	};
	RingConsumer cons;
	bpfmap::UserRingProducer uprod;
	bool user = type == USER_RINGBUF;
	if (user)
		bpfmap::UserRingProducer::open(fd, uprod);
	else
		RingConsumer::open(
			fd,
			[](const void *d, size_t n) {
				volatile char sum = 0;
				for (size_t i = 0; i < n; i++)
					sum = static_cast<char>(sum +
								static_cast<const char *>(d)[i]);
				return 0;
			},
			cons);
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
				(v & 1) ? bpfmap_ringbuf_submit(rec, 0)
					: bpfmap_ringbuf_discard(rec, 0);
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
			auto until =
				std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
			while (std::chrono::steady_clock::now() < until) {
				scribble_ring(raw, rng, 1 + static_cast<int>(rng() % 4));
				usleep(2000);
			}
			int st = 0;
			waitpid(pid, &st, 0);
			EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
				<< "type " << type << " round " << round << ": status " << st
				<< (WIFSIGNALED(st)
					    ? " (signal " + std::to_string(WTERMSIG(st)) + ")"
					    : "");
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
