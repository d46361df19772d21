// What the ring buffer tests (ringbuf_test.cc, user_ringbuf_test.cc, ringbuf_corrupt_test.cc,
// one binary) share: the ring as libbpf maps it, the raw region under it, records in
// reservation order, and a drain callback that records what it saw.
#pragma once

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "bpfmap/ringbuf.hpp"
#include "test_util.h"

namespace ringbuf_test {

using namespace bpfmap::test;
using bpfmap::RingConsumer;
using bpfmap::RingProducer;

constexpr uint32_t RINGBUF = 27;
constexpr size_t PAGE = 4096;
constexpr uint32_t BUSY = 1u << 31, DISCARD = 1u << 30;

// The ring as libbpf maps it: the consumer page writable, the producer page and the data
// (twice) read-only.
struct ring_mmap {
	size_t size;
	uint64_t *cons = nullptr;
	const char *prod_page = nullptr;

	ring_mmap(int fd, size_t sz)
		: size(sz)
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
	uint64_t prod() const
	{
		return __atomic_load_n(reinterpret_cast<const uint64_t *>(prod_page),
				       __ATOMIC_ACQUIRE);
	}
	const char *data() const { return prod_page + PAGE; }
	uint32_t len_at(uint64_t pos) const
	{
		return __atomic_load_n(
			reinterpret_cast<const uint32_t *>(data() + (pos & (size - 1))),
			__ATOMIC_ACQUIRE);
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
	explicit ring(uint32_t size)
		: fd(map_create(RINGBUF, 0, 0, size))
		, m(fd >= 0 ? bpfmap_map_get(fd) : nullptr)
	{
	}
	~ring()
	{
		bpfmap_map_put(m);
		if (fd >= 0)
			close(fd);
	}
};

inline uint64_t rec_len(uint64_t size) { return (size + 8 + 7) / 8 * 8; }

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
	static void put64(char *at, uint64_t v)
	{
		__atomic_store_n(reinterpret_cast<uint64_t *>(at), v, __ATOMIC_RELAXED);
	}
	static void put32(char *at, uint32_t v)
	{
		__atomic_store_n(reinterpret_cast<uint32_t *>(at), v, __ATOMIC_RELAXED);
	}
	static uint64_t get64(const char *at)
	{
		return __atomic_load_n(reinterpret_cast<const uint64_t *>(at), __ATOMIC_RELAXED);
	}
	static uint32_t get32(const char *at)
	{
		return __atomic_load_n(reinterpret_cast<const uint32_t *>(at), __ATOMIC_RELAXED);
	}
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

	ordered_records(int producers, size_t (*sz)(uint32_t, uint32_t))
		: next(producers, 0)
		, size_of(sz)
	{
	}

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
			ok = static_cast<const unsigned char *>(d)[i] ==
			     static_cast<unsigned char>(v[1] + i);
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

// ---- USER_RINGBUF --------------------------------------------------------------------------

constexpr uint32_t USER_RINGBUF = 31;

struct drained {
	std::vector<std::string> recs;
	long stop_after = -1; // callback returns 1 at this record
	bpfmap_map *nested = nullptr;
	long nested_ret = 0;
};

inline long on_drain(const void *data, uint64_t size, void *ctx)
{
	auto *d = static_cast<drained *>(ctx);
	d->recs.emplace_back(static_cast<const char *>(data), size);
	if (d->nested)
		d->nested_ret = bpfmap_user_ringbuf_drain(d->nested, on_drain, nullptr, 0);
	return static_cast<long>(d->recs.size()) - 1 == d->stop_after ? 1 : 0;
}

} // namespace ringbuf_test
