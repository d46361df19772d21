// What the parts of the fuzz target share (bpfmap_fuzz.cc: the entry points and teardown;
// fuzz_syscall_ops.cc: the bpf() commands; fuzz_program_ops.cc: the program side, rings,
// mmap, the C++ handle and scribbling): the input reader, the buffers and the state of
// one input, and the operations each part defines.
#pragma once

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <memory>
#include <string>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "bpfmap/bpfmap.h"
#include "bpfmap/map.hpp"
#include "bpfmap/ringbuf.hpp"
#include "uapi/bpf_uapi.h"

namespace bpfmap_fuzz {

namespace u = bpfmap::uapi;

constexpr size_t BUF_SIZE = 256 << 10;
constexpr int NBUF = 4;
constexpr size_t ATTR_BUF = u::BPF_ATTR_MAX_USER_SIZE;
constexpr uint32_t KEY_MAX = 1024;
constexpr uint32_t VALUE_MAX = 32 << 10;
constexpr rlim_t FSIZE_LIMIT = 64 << 20;
constexpr size_t MAX_FDS = 24;
constexpr size_t MAX_HANDLES = 8;
constexpr size_t MAX_RECORDS = 64;
constexpr size_t MAX_MAPPINGS = 8;
constexpr int MAX_OPS = 256;
constexpr size_t PAGE = 4096;

// ---- The input, read front to back; zeros past its end.

class reader {
public:
	reader(const uint8_t *p, size_t n)
		: p_(p)
		, end_(p + n)
	{
	}
	bool empty() const { return p_ >= end_; }
	uint8_t u8() { return p_ < end_ ? *p_++ : 0; }
	uint16_t u16() { return static_cast<uint16_t>(u8() | u8() << 8); }
	uint32_t u32() { return u16() | static_cast<uint32_t>(u16()) << 16; }
	uint64_t u64() { return u32() | static_cast<uint64_t>(u32()) << 32; }
	// n bytes into dst (zeros past the end).
	void bytes(void *dst, size_t n)
	{
		size_t have = std::min<size_t>(n, static_cast<size_t>(end_ - p_));
		memcpy(dst, p_, have);
		memset(static_cast<char *>(dst) + have, 0, n - have);
		p_ += have;
	}

	// A 32-bit operand: small numbers, the edges sizes and counts meet, or any value.
	uint32_t pick32()
	{
		static const uint32_t edges[32] = {
			0xffffffff, 0x80000000,	  0x7fffffff, 0x7ffffffe, 4096,	   8192,
			65536,	    1U << 20,	  256,	      512,	  1024,	   255,
			257,	    4095,	  4097,	      0x10000000, 16,	   0x40000000,
			0x3fffffff, 0xfffff,	  0x100000,   0xffff,	  0x10000, 4096 * 3,
			1U << 24,   1U << 31 | 1, 511,	      513,	  1023,	   1025,
			0xfffffff0, 0x7ffff000};
		uint8_t s = u8();
		if (s < 0xc0)
			return s;
		if (s < 0xe0)
			return edges[s - 0xc0];
		return u32();
	}
	uint64_t pick64()
	{
		uint8_t s = u8();
		if (s < 0xf0)
			return s & 0xf ? s : s >> 4; // small flags and numbers
		if (s < 0xf8)
			return uint64_t{1} << (u8() & 63);
		return u64();
	}

private:
	const uint8_t *p_, *end_;
};

// ---- Memory this program owns, for the library to read and write.

inline uint8_t *bufs[NBUF];
inline uint8_t *attr_buf;
inline std::string root, sub_dir, outside_dir;
inline bool scribble;
inline uint32_t ncpus;

// A pointer operand for a call that touches `need` bytes (0 when not known), preferring
// buffer `role`.
inline void *pick_ptr(reader &in, int role, size_t need)
{
	uint8_t s = in.u8();
	uint8_t *b = bufs[(role + (s >> 6)) % NBUF];
	switch (s & 0xf) {
	case 0:
		return nullptr;
	case 1:
		return reinterpret_cast<void *>(uintptr_t{1} + (s >> 4) * 255);
	case 2:
	case 3:
	case 4:
	case 5:
	case 6:
	case 7:
		if (need && need <= BUF_SIZE)
			return b + BUF_SIZE - need;
		return b;
	default:
		return b;
	}
}

inline uint64_t ptr64(const void *p) { return reinterpret_cast<uintptr_t>(p); }

// Fill n bytes at p (if p is ours) from the input: a 32-bit word first, then a counted
// run of bytes (read whatever n is, so that the input's layout does not depend on it);
// the rest keeps what earlier calls left there.
inline void fill(reader &in, void *p, size_t n)
{
	uint32_t w = in.pick32();
	uint8_t run[64];
	uint8_t len = in.u8() % 64;
	in.bytes(run, len);
	if (reinterpret_cast<uintptr_t>(p) < PAGE || !n)
		return;
	auto *c = static_cast<uint8_t *>(p);
	memcpy(c, &w, std::min<size_t>(4, n));
	if (n > 4)
		memcpy(c + 4, run, std::min<size_t>(len, n - 4));
}

// ---- What an input holds, all released at its end.

enum class fd_kind { map, btf };

struct fd_entry {
	int fd;
	fd_kind kind;
	bool known = false; // sizes below are the map's
	uint32_t type = 0, key_size = 0, value_size = 0, value_bytes = 0, max_entries = 0;
	uint32_t flags = 0, id = 0;
};

struct handle_entry {
	bpfmap_map *map;
	uint32_t type, key_size, value_size, value_bytes, flags;
	int records = 0; // reserved ring records that hold this handle
};

struct record_entry {
	void *data;
	uint64_t size;
	int handle = -1;   // kernel-side ring: the handle it came from
	int producer = -1; // user ring: the producer that reserved it
};

struct mapping_entry {
	uint8_t *addr;
	size_t len;
	int prot;
	bool map;  // of one of our map fds: every page must be there (others may end early)
	bool ring; // of a ring buffer: positions and record headers live in it
};

struct state {
	std::vector<fd_entry> fds;
	std::vector<handle_entry> handles;
	std::vector<record_entry> records;
	std::vector<std::unique_ptr<bpfmap::UserRingProducer>> producers;
	std::vector<int> producer_records;
	std::vector<std::unique_ptr<bpfmap::RingConsumer>> consumers;
	std::vector<mapping_entry> mappings;
	uint32_t max_elem = 0; // largest key or value of any map this input held
	int last_closed = -1;
	int epfd = -1;
};

// Non-map fds and numbers that are no fd, made once.
inline int devnull_fd, dir_fd, pipe_fd, junk_fd;

inline bool is_percpu(uint32_t type)
{
	return type == u::MAP_TYPE_PERCPU_HASH || type == u::MAP_TYPE_PERCPU_ARRAY ||
	       type == u::MAP_TYPE_LRU_PERCPU_HASH;
}

inline uint32_t value_bytes(uint32_t type, uint32_t value_size)
{
	return is_percpu(type) ? ((value_size + 7) & ~7U) * ncpus : value_size;
}

inline bool trace; // BPFMAP_FUZZ_TRACE=1: each command and its result on stderr

#define TRACE(...)                                         \
	do {                                               \
		if (trace)                                 \
			fprintf(stderr, "  " __VA_ARGS__); \
	} while (0)

inline long sys(int cmd, void *attr, unsigned size)
{
	long r = bpfmap_bpf(cmd, static_cast<union bpf_attr *>(attr), size);
	r = r < 0 ? -errno : r;
	if (trace)
		fprintf(stderr, "  bpf(%d, %p, %u) = %ld%s%s\n", cmd, attr, size, r,
			r < 0 ? " " : "", r < 0 ? strerror(static_cast<int>(-r)) : "");
	return r;
}

inline bool map_info(int fd, u::bpf_map_info *info)
{
	u::bpf_attr a{};
	*info = {};
	a.info.bpf_fd = static_cast<uint32_t>(fd);
	a.info.info_len = sizeof(*info);
	a.info.info = ptr64(info);
	return sys(u::OBJ_GET_INFO_BY_FD, &a, sizeof(a)) == 0;
}

// Take a new fd into the input's table; a map too large for our buffers is closed at once.
inline void adopt(state &st, long fd, fd_kind kind)
{
	if (fd < 0)
		return;
	fd_entry e{static_cast<int>(fd), kind};
	if (kind == fd_kind::map) {
		u::bpf_map_info info;
		if (!map_info(e.fd, &info)) {
			fprintf(stderr, "fd %d from a map command has no map info\n", e.fd);
			abort();
		}
		e.known = true;
		e.type = info.type;
		e.key_size = info.key_size;
		e.value_size = info.value_size;
		e.value_bytes = value_bytes(info.type, info.value_size);
		e.max_entries = info.max_entries;
		e.flags = info.map_flags;
		e.id = info.id;
		if (e.key_size > KEY_MAX || e.value_bytes > VALUE_MAX) {
			close(e.fd);
			return;
		}
		st.max_elem = std::max({st.max_elem, e.key_size, e.value_bytes});
	}
	if (st.fds.size() >= MAX_FDS) {
		close(e.fd);
		return;
	}
	st.fds.push_back(e);
}

// An fd operand: one of ours, or something that is not a map fd.
inline int pick_fd(reader &in, const state &st, const fd_entry **entry)
{
	uint8_t s = in.u8();
	*entry = nullptr;
	if (s < 0xc0 && !st.fds.empty()) {
		*entry = &st.fds[s % st.fds.size()];
		return (*entry)->fd;
	}
	const int others[] = {-1,      0,	   1,
			      2,       devnull_fd, dir_fd,
			      pipe_fd, junk_fd,	   st.last_closed,
			      1 << 20, 0x7fffffff, 1023,
			      1024,    -2,	   9999,
			      3};
	return others[s % 16];
}

// The attr size operand: the kernel's full size mostly, else shorter, longer (with zeros
// or garbage past our union) or anything. A short size is a multiple of 8, so that it
// never cuts a pointer field (all are 8-byte aligned) into a wild pointer.
inline unsigned pick_size(reader &in)
{
	uint8_t s = in.u8();
	switch (s & 7) {
	case 5:
		return s >> 3 << 3; // 0..248
	case 6: {
		unsigned n = sizeof(u::bpf_attr) + (s >> 3) * 97;
		if (s & 0x80)
			attr_buf[n - 1] = s; // garbage in the tail
		return n;
	}
	case 7: {
		uint32_t n = in.pick32();
		return n < sizeof(u::bpf_attr) ? n & ~7U : n;
	}
	default:
		return sizeof(u::bpf_attr);
	}
}

// Call cmd with attr a copied into the attr buffer, passed with a size operand; the attr
// pointer itself is sometimes NULL or a first-page address.
inline long call(reader &in, int cmd, const u::bpf_attr &a)
{
	memset(attr_buf, 0, ATTR_BUF);
	memcpy(attr_buf, &a, sizeof(a));
	unsigned size = pick_size(in);
	uint8_t p = in.u8();
	void *attr = attr_buf;
	if (p == 0xfe)
		attr = nullptr;
	else if (p == 0xff)
		attr = reinterpret_cast<void *>(uintptr_t{16});
	return sys(cmd, attr, size);
}

inline bool is_ring(uint32_t type)
{
	return type == u::MAP_TYPE_RINGBUF || type == u::MAP_TYPE_USER_RINGBUF;
}

// The operations, one opcode each (fuzz_syscall_ops.cc).
void op_create(reader &in, state &st);
void op_elem(reader &in, state &st);
void op_batch(reader &in, state &st);
void op_freeze(reader &in, state &st);
void op_info(reader &in, state &st);
void op_pin(reader &in, state &st, bool get);
void op_id(reader &in, state &st);
void op_btf(reader &in, state &st);
void op_raw(reader &in, state &st);
void op_close(reader &in, state &st);
void op_dup_over(reader &in, state &st);
void op_close_range(reader &in, state &st);
void op_dup(reader &in, state &st);
// fuzz_program_ops.cc
void op_prog(reader &in, state &st);
void op_ring(reader &in, state &st);
void op_mmap(reader &in, state &st);
void op_cxx(reader &in, state &st);
void op_scribble(reader &in, state &st);
// Submit or discard reserved record i (the teardown uses it for records left reserved).
void commit_record(state &st, size_t i, uint64_t flags, bool discard);

} // namespace bpfmap_fuzz
