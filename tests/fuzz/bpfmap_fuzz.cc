// libFuzzer target: each input is a little program of bpfmap calls, run in this process
// against a pin root of its own.
//
// The program is a sequence of operations, each an opcode byte and its operands read in a
// fixed order (make_corpus.py writes seeds in the same order; a field past the end of the
// input reads as zero). Operations: create maps of every type with fuzzed attrs; element,
// batch, freeze, info, pin, get, id and BTF commands with fuzzed fields, attr sizes and
// flags, on the fds created, on fds that are not maps and on numbers that are no fd;
// commands that bpfmap does not serve, with raw attrs; the program-side calls of
// bpfmap.h on handles; ring buffer producers, consumers and drains, and epoll sets that
// hold rings; mmap(), mremap(), mprotect() and munmap() of map fds and writes through the
// mappings the kernel would allow; close(), close_range(), dup(), dup2() and dup3().
// Everything an input made is released at its end (records committed, handles put,
// mappings removed, fds closed, pins unlinked), and the id directories must then be empty:
// nothing leaks from one input into the next.
//
// User memory. bpfmap, like the kernel, reads and writes through the caller's pointers; it
// can refuse only NULL and first-page pointers (README, "Known limits"), so every other
// pointer this program passes points into memory it owns and is large enough for what the
// call may touch there:
// - Four buffers of BUF_SIZE bytes each, allocated once, each its own heap block so that
//   ASan's redzone follows its end. A pointer operand is NULL, a first-page address, the
//   start of a buffer, or "tight": the buffer's end minus the bytes the call should touch
//   (computed here from the map's key and value sizes), so that a read or write past
//   them is caught by ASan.
// - Maps with keys over KEY_MAX bytes or values over VALUE_MAX bytes (per-CPU: all CPUs'
//   values) would need larger buffers: such a map is closed as soon as it is created or
//   opened. Creation itself is fuzzed with any sizes, and a file size limit (FSIZE_LIMIT)
//   turns a region too large for the machine into ENOMEM, as the kernel's allocation
//   would fail, instead of filling /dev/shm.
// - Batch counts are clamped so that count elements fit a buffer; BTF, log and info sizes
//   likewise, except sizes so large that bpfmap must refuse them before any copy (the
//   kernel's E2BIG and EINVAL limits).
// - The attr buffer is one page, the most bpfmap reads (larger sizes are E2BIG). A short
//   attr size is a multiple of 8, so that it never cuts a pointer field in two.
// - Program-side calls get pointers valid for the map's key and value sizes (tight ones),
//   as the kernel's verifier guarantees a program's.
// - Pointers nested in user memory (bpf_map_info.hash, bpf_btf_info.btf and .name) are
//   chosen the same way.
//
// Writes into a map's shared memory from outside the API (the scribbling of issue 18) are
// off unless BPFMAP_FUZZ_SCRIBBLE=1: with it, one operation writes input bytes into a live
// map's file, and writes through a ring buffer's mapping may reach its positions and
// record headers (without it, only an mmapable array's values are written that way).
// BPFMAP_FUZZ_TRACE=1 prints each operation and command, for reading a reproducer.
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <memory>
#include <string>
#include <linux/close_range.h>
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

namespace {

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
	reader(const uint8_t *p, size_t n) : p_(p), end_(p + n) {}
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
			0xffffffff, 0x80000000, 0x7fffffff, 0x7ffffffe, 4096, 8192, 65536, 1U << 20,
			256, 512, 1024, 255, 257, 4095, 4097, 0x10000000, 16, 0x40000000, 0x3fffffff,
			0xfffff, 0x100000, 0xffff, 0x10000, 4096 * 3, 1U << 24, 1U << 31 | 1, 511,
			513, 1023, 1025, 0xfffffff0, 0x7ffff000};
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

uint8_t *bufs[NBUF];
uint8_t *attr_buf;
std::string root, sub_dir, outside_dir;
bool scribble;
uint32_t ncpus;

// A pointer operand for a call that touches `need` bytes (0 when not known), preferring
// buffer `role`.
void *pick_ptr(reader &in, int role, size_t need)
{
	uint8_t s = in.u8();
	uint8_t *b = bufs[(role + (s >> 6)) % NBUF];
	switch (s & 0xf) {
	case 0:
		return nullptr;
	case 1:
		return reinterpret_cast<void *>(uintptr_t{1} + (s >> 4) * 255);
	case 2: case 3: case 4: case 5: case 6: case 7:
		if (need && need <= BUF_SIZE)
			return b + BUF_SIZE - need;
		return b;
	default:
		return b;
	}
}

uint64_t ptr64(const void *p) { return reinterpret_cast<uintptr_t>(p); }

// Fill n bytes at p (if p is ours) from the input: a 32-bit word first, then a counted
// run of bytes (read whatever n is, so that the input's layout does not depend on it);
// the rest keeps what earlier calls left there.
void fill(reader &in, void *p, size_t n)
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
int devnull_fd, dir_fd, pipe_fd, junk_fd;

bool is_percpu(uint32_t type)
{
	return type == u::MAP_TYPE_PERCPU_HASH || type == u::MAP_TYPE_PERCPU_ARRAY ||
	       type == u::MAP_TYPE_LRU_PERCPU_HASH;
}

uint32_t value_bytes(uint32_t type, uint32_t value_size)
{
	return is_percpu(type) ? ((value_size + 7) & ~7U) * ncpus : value_size;
}

bool trace; // BPFMAP_FUZZ_TRACE=1: each command and its result on stderr

#define TRACE(...)                                    \
	do {                                          \
		if (trace)                            \
			fprintf(stderr, "  " __VA_ARGS__); \
	} while (0)

long sys(int cmd, void *attr, unsigned size)
{
	long r = bpfmap_bpf(cmd, static_cast<union bpf_attr *>(attr), size);
	r = r < 0 ? -errno : r;
	if (trace)
		fprintf(stderr, "  bpf(%d, %p, %u) = %ld%s%s\n", cmd, attr, size, r,
			r < 0 ? " " : "", r < 0 ? strerror(static_cast<int>(-r)) : "");
	return r;
}

bool map_info(int fd, u::bpf_map_info *info)
{
	u::bpf_attr a{};
	*info = {};
	a.info.bpf_fd = static_cast<uint32_t>(fd);
	a.info.info_len = sizeof(*info);
	a.info.info = ptr64(info);
	return sys(u::OBJ_GET_INFO_BY_FD, &a, sizeof(a)) == 0;
}

// Take a new fd into the input's table; a map too large for our buffers is closed at once.
void adopt(state &st, long fd, fd_kind kind)
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
int pick_fd(reader &in, const state &st, const fd_entry **entry)
{
	uint8_t s = in.u8();
	*entry = nullptr;
	if (s < 0xc0 && !st.fds.empty()) {
		*entry = &st.fds[s % st.fds.size()];
		return (*entry)->fd;
	}
	const int others[] = {-1, 0, 1, 2, devnull_fd, dir_fd, pipe_fd, junk_fd, st.last_closed,
			      1 << 20, 0x7fffffff, 1023, 1024, -2, 9999, 3};
	return others[s % 16];
}

// The attr size operand: the kernel's full size mostly, else shorter, longer (with zeros
// or garbage past our union) or anything. A short size is a multiple of 8, so that it
// never cuts a pointer field (all are 8-byte aligned) into a wild pointer.
unsigned pick_size(reader &in)
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
long call(reader &in, int cmd, const u::bpf_attr &a)
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

// ---- Operations.

const uint32_t served_types[] = {
	u::MAP_TYPE_HASH,	u::MAP_TYPE_ARRAY,	  u::MAP_TYPE_PERCPU_HASH,
	u::MAP_TYPE_PERCPU_ARRAY, u::MAP_TYPE_LRU_HASH, u::MAP_TYPE_LRU_PERCPU_HASH,
	u::MAP_TYPE_LPM_TRIE,	u::MAP_TYPE_QUEUE,	  u::MAP_TYPE_STACK,
	u::MAP_TYPE_RINGBUF,	u::MAP_TYPE_BLOOM_FILTER, u::MAP_TYPE_USER_RINGBUF,
	u::MAP_TYPE_UNSPEC,	u::MAP_TYPE_PROG_ARRAY,   u::MAP_TYPE_ARENA,
	u::MAP_TYPE_MAX};

bool is_ring(uint32_t type) { return type == u::MAP_TYPE_RINGBUF || type == u::MAP_TYPE_USER_RINGBUF; }
bool keyless(uint32_t type)
{
	return is_ring(type) || type == u::MAP_TYPE_QUEUE || type == u::MAP_TYPE_STACK ||
	       type == u::MAP_TYPE_BLOOM_FILTER;
}

const uint32_t flag_bits[16] = {
	u::BPF_F_NO_PREALLOC, u::BPF_F_NO_COMMON_LRU, u::BPF_F_RDONLY,	  u::BPF_F_WRONLY,
	u::BPF_F_ZERO_SEED,   u::BPF_F_RDONLY_PROG,   u::BPF_F_WRONLY_PROG, u::BPF_F_MMAPABLE,
	u::BPF_F_NUMA_NODE,   u::BPF_F_TOKEN_FD,      u::BPF_F_PRESERVE_ELEMS, u::BPF_F_INNER_MAP,
	u::BPF_F_CLONE,	      u::BPF_F_SEGV_ON_FAULT, u::BPF_F_RB_OVERWRITE, u::BPF_F_NO_USER_CONV};

// MAP_CREATE. Each size is either one that fits the type ("valid-ish", selector < 0x80)
// or any 32-bit value.
void op_create(reader &in, state &st)
{
	u::bpf_attr a{};
	auto &c = a.map_create;
	uint8_t t = in.u8();
	c.map_type = t < 0xf0 ? served_types[t % 16] : in.u32();
	bool ring = is_ring(c.map_type);
	uint8_t s = in.u8();
	if (s < 0x80)
		c.key_size = keyless(c.map_type)		  ? 0
			     : c.map_type == u::MAP_TYPE_ARRAY ||
					       c.map_type == u::MAP_TYPE_PERCPU_ARRAY
				     ? 4
			     : c.map_type == u::MAP_TYPE_LPM_TRIE ? 4 + (1U << (s % 5))
								   : 1U << (s % 7);
	else
		c.key_size = in.pick32();
	s = in.u8();
	c.value_size = s < 0x80 ? (ring ? 0 : 1 + s % 64) : in.pick32();
	s = in.u8();
	c.max_entries = s < 0x80 ? (ring ? 4096U << (s % 5) : 1 + s % 64) : in.pick32();
	s = in.u8();
	if (s < 0x80) {
		uint16_t bits = in.u16();
		for (int i = 0; i < 16; i++)
			if (bits & (1U << i))
				c.map_flags |= flag_bits[i];
	} else {
		c.map_flags = in.pick32();
	}
	s = in.u8();
	c.map_extra = s < 0x80 ? (c.map_type == u::MAP_TYPE_BLOOM_FILTER ? s % 16 : 0) : in.pick64();
	static const char *names[] = {"", "m", "map_1", "a.b", "bad name", "\xc3\xa9t\xc3\xa9",
				      "0123456789abcde", "0123456789abcdef"};
	s = in.u8();
	if (s < 0xf0)
		memcpy(c.map_name, names[s % 8], strnlen(names[s % 8], sizeof(c.map_name)));
	else
		in.bytes(c.map_name, sizeof(c.map_name));
	s = in.u8();
	if (s >= 0x80) { // BTF types
		const fd_entry *e;
		c.btf_fd = static_cast<uint32_t>(pick_fd(in, st, &e));
		c.btf_key_type_id = in.pick32();
		c.btf_value_type_id = in.pick32();
	}
	s = in.u8();
	if (s >= 0xc0) { // the rarer fields
		c.numa_node = in.pick32();
		c.map_ifindex = in.u8() % 3;
		c.inner_map_fd = in.pick32();
		c.btf_vmlinux_value_type_id = in.u8() % 2;
		c.map_token_fd = static_cast<int32_t>(in.pick32());
		c.value_type_btf_obj_fd = static_cast<int32_t>(in.pick32());
		c.excl_prog_hash = ptr64(pick_ptr(in, 3, 32));
		c.excl_prog_hash_size = in.pick32();
	}
	adopt(st, call(in, u::MAP_CREATE, a), fd_kind::map);
}

// The element commands. Key and value pointers are sized from the map when it is ours.
void op_elem(reader &in, state &st)
{
	static const int cmds[] = {u::MAP_LOOKUP_ELEM, u::MAP_UPDATE_ELEM, u::MAP_DELETE_ELEM,
				   u::MAP_GET_NEXT_KEY, u::MAP_LOOKUP_AND_DELETE_ELEM};
	int cmd = cmds[in.u8() % 5];
	const fd_entry *e;
	u::bpf_attr a{};
	a.elem.map_fd = static_cast<uint32_t>(pick_fd(in, st, &e));
	size_t ks = e && e->known ? e->key_size : 0;
	size_t vs = e && e->known ? e->value_bytes : 0;
	void *key = pick_ptr(in, 0, ks);
	fill(in, key, ks ? ks : 8);
	void *value = pick_ptr(in, cmd == u::MAP_GET_NEXT_KEY ? 2 : 1,
			       cmd == u::MAP_GET_NEXT_KEY ? ks : vs);
	fill(in, value, cmd == u::MAP_GET_NEXT_KEY ? 0 : vs);
	a.elem.key = ptr64(key);
	a.elem.value = ptr64(value);
	a.elem.flags = in.pick64();
	call(in, cmd, a);
}

// The batch commands: count is clamped so that count keys and values fit a buffer.
void op_batch(reader &in, state &st)
{
	static const int cmds[] = {u::MAP_LOOKUP_BATCH, u::MAP_LOOKUP_AND_DELETE_BATCH,
				   u::MAP_UPDATE_BATCH, u::MAP_DELETE_BATCH};
	int cmd = cmds[in.u8() % 4];
	const fd_entry *e;
	u::bpf_attr a{};
	auto &b = a.batch;
	b.map_fd = static_cast<uint32_t>(pick_fd(in, st, &e));
	size_t ks = e && e->known ? e->key_size : 0;
	size_t vs = e && e->known ? e->value_bytes : 0;
	size_t elem = e && e->known ? std::max<size_t>({ks, vs, 8}) : std::max<size_t>(st.max_elem, 8);
	uint32_t count = in.pick32();
	count = static_cast<uint32_t>(std::min<size_t>(count, BUF_SIZE / elem));
	b.count = count;
	size_t batch_token = std::max<size_t>(ks, 8);
	void *in_batch = pick_ptr(in, 2, batch_token);
	fill(in, in_batch, batch_token);
	if (in.u8() & 1)
		in_batch = nullptr; // the first call of a walk
	b.in_batch = ptr64(in_batch);
	b.out_batch = ptr64(pick_ptr(in, 3, batch_token));
	void *keys = pick_ptr(in, 0, ks * count);
	void *values = pick_ptr(in, 1, vs * count);
	fill(in, keys, ks * count);
	fill(in, values, vs * count);
	b.keys = ptr64(keys);
	b.values = ptr64(values);
	b.elem_flags = in.pick64();
	b.flags = in.pick64();
	call(in, cmd, a);
}

void op_freeze(reader &in, state &st)
{
	const fd_entry *e;
	u::bpf_attr a{};
	a.elem.map_fd = static_cast<uint32_t>(pick_fd(in, st, &e));
	call(in, u::MAP_FREEZE, a);
}

// OBJ_GET_INFO_BY_FD on a map or BTF fd, with nested pointers chosen like the others.
void op_info(reader &in, state &st)
{
	const fd_entry *e;
	u::bpf_attr a{};
	a.info.bpf_fd = static_cast<uint32_t>(pick_fd(in, st, &e));
	uint32_t len = in.pick32();
	// info_len over one page is E2BIG before any access; up to it, the buffer holds it.
	void *info = pick_ptr(in, 3, len <= u::BPF_ATTR_MAX_USER_SIZE ? len : 0);
	if (reinterpret_cast<uintptr_t>(info) >= PAGE && len <= u::BPF_ATTR_MAX_USER_SIZE) {
		memset(info, 0, len);
		uint8_t s = in.u8();
		if (s & 1) { // garbage past the known fields
			size_t at = sizeof(u::bpf_map_info) + in.u8();
			if (at < len)
				static_cast<uint8_t *>(info)[at] = 1;
		}
		if (e && e->kind == fd_kind::btf) {
			u::bpf_btf_info bi{};
			bi.btf_size = std::min<uint32_t>(in.pick32(), BUF_SIZE);
			bi.btf = ptr64(pick_ptr(in, 0, bi.btf_size));
			bi.name_len = in.pick32();
			bi.name = ptr64(pick_ptr(in, 1, 1));
			memcpy(info, &bi, std::min<size_t>(len, sizeof(bi)));
		} else {
			u::bpf_map_info mi{};
			mi.hash_size = in.pick32();
			mi.hash = ptr64(pick_ptr(in, 0, 32));
			memcpy(info, &mi, std::min<size_t>(len, sizeof(mi)));
		}
	}
	a.info.info_len = len;
	a.info.info = ptr64(info);
	call(in, u::OBJ_GET_INFO_BY_FD, a);
}

// A pin path: under the bpffs stand-in, under the pin root itself or a directory in it,
// relative to a directory fd, outside the root, or empty; its last part from the input.
std::string pick_path(reader &in, int32_t *path_fd, uint32_t *file_flags)
{
	uint8_t s = in.u8();
	char name[17] = {};
	uint8_t n = in.u8() % 16;
	for (int i = 0; i < n; i++) {
		static const char chars[] = "abcxyz019._-";
		name[i] = chars[in.u8() % (sizeof(chars) - 1)];
	}
	if (!n)
		name[n++] = 'p';
	switch (s % 8) {
	case 0: case 1:
		return std::string("/sys/fs/bpf/") + name;
	case 2:
		return root + "/" + name;
	case 3:
		return "/sys/fs/bpf/sub/" + std::string(name);
	case 4:
		*file_flags |= u::BPF_F_PATH_FD;
		*path_fd = dir_fd;
		return name;
	case 5:
		return outside_dir + "/" + name;
	case 6:
		return "";
	default:
		return "/sys/fs/bpf/nodir/" + std::string(name);
	}
}

void op_pin(reader &in, state &st, bool get)
{
	const fd_entry *e;
	u::bpf_attr a{};
	if (!get)
		a.obj.bpf_fd = static_cast<uint32_t>(pick_fd(in, st, &e));
	std::string path = pick_path(in, &a.obj.path_fd, &a.obj.file_flags);
	char *p = reinterpret_cast<char *>(bufs[3]);
	memcpy(p, path.c_str(), path.size() + 1);
	uint8_t s = in.u8();
	a.obj.pathname = s == 0xff ? 0 : s == 0xfe ? 64 : ptr64(p);
	if (s >= 0xc0 && s < 0xfe) {
		a.obj.file_flags ^= in.pick32();
		a.obj.path_fd ^= static_cast<int32_t>(in.pick32());
		if (get)
			a.obj.bpf_fd = in.pick32();
	}
	long r = call(in, get ? u::OBJ_GET : u::OBJ_PIN, a);
	if (get)
		adopt(st, r, fd_kind::map);
}

// An id operand: one of our maps' ids, or any number.
uint32_t pick_id(reader &in, const state &st)
{
	uint8_t s = in.u8();
	if (s < 0x80 && !st.fds.empty()) {
		const fd_entry &e = st.fds[s % st.fds.size()];
		return e.id + (s >> 6);
	}
	return in.pick32();
}

void op_id(reader &in, state &st)
{
	uint8_t s = in.u8();
	u::bpf_attr a{};
	a.id.start_id = pick_id(in, st);
	if (in.u8() >= 0xc0) {
		a.id.open_flags = in.pick32();
		a.id.fd_by_id_token_fd = static_cast<int32_t>(in.pick32());
		a.id.next_id = in.pick32();
	}
	switch (s % 4) {
	case 0:
		call(in, u::MAP_GET_NEXT_ID, a);
		break;
	case 1:
		call(in, u::BTF_GET_NEXT_ID, a);
		break;
	case 2:
		adopt(st, call(in, u::MAP_GET_FD_BY_ID, a), fd_kind::map);
		break;
	default:
		adopt(st, call(in, u::BTF_GET_FD_BY_ID, a), fd_kind::btf);
		break;
	}
}

// BPF_BTF_LOAD of a blob from the input (written into a buffer), with a log buffer.
void op_btf(reader &in, state &st)
{
	u::bpf_attr a{};
	auto &b = a.btf_load;
	uint16_t n = in.u16() % 2048;
	in.bytes(bufs[2], n);
	uint32_t size = n;
	uint8_t s = in.u8();
	if (s >= 0xf0)
		size = in.pick32();
	// Over BTF_MAX_SIZE is E2BIG before the copy; up to it, the buffer must hold it.
	if (size > BUF_SIZE && size <= (16 << 20))
		size = BUF_SIZE;
	b.btf_size = size;
	b.btf = size <= BUF_SIZE && (s & 0xf) == 1 ? ptr64(bufs[2] + BUF_SIZE - size) : ptr64(bufs[2]);
	if ((s & 0xf) == 2)
		b.btf = 0;
	s = in.u8();
	if (s & 1) {
		b.btf_log_level = in.pick32();
		b.btf_log_size = in.pick32();
		b.btf_log_buf = ptr64(pick_ptr(in, 3, std::min<size_t>(b.btf_log_size, BUF_SIZE)));
	}
	if (s & 2) {
		b.btf_flags = in.pick32();
		b.btf_token_fd = static_cast<int32_t>(in.pick32());
	}
	TRACE("btf %u bytes at %#llx, log level %u size %u at %#llx\n", b.btf_size,
	      (unsigned long long)b.btf, b.btf_log_level, b.btf_log_size,
	      (unsigned long long)b.btf_log_buf);
	adopt(st, call(in, u::BTF_LOAD, a), fd_kind::btf);
}

// Commands bpfmap does not serve, and served commands without pointers, with raw attrs.
void op_raw(reader &in, state &st)
{
	static const int cmds[] = {u::PROG_LOAD, 8, 9, 10, 11, 13, 16, 17, 20, 28, 29, 36, -1,
				   1000, u::MAP_GET_NEXT_ID, u::MAP_GET_FD_BY_ID, u::BTF_GET_NEXT_ID,
				   u::BTF_GET_FD_BY_ID, u::MAP_FREEZE, u::MAP_CREATE};
	uint8_t s = in.u8();
	int cmd = s < 0xf0 ? cmds[s % 20] : static_cast<int>(in.u32());
	u::bpf_attr a{};
	in.bytes(&a, in.u8() % (sizeof(a) + 1));
	long r = call(in, cmd, a);
	if (cmd == u::MAP_CREATE || cmd == u::MAP_GET_FD_BY_ID)
		adopt(st, r, fd_kind::map);
	else if (cmd == u::BTF_GET_FD_BY_ID)
		adopt(st, r, fd_kind::btf);
}

void op_close(reader &in, state &st)
{
	uint8_t s = in.u8();
	if (st.fds.empty())
		return;
	size_t i = s % st.fds.size();
	close(st.fds[i].fd);
	st.last_closed = st.fds[i].fd;
	st.fds.erase(st.fds.begin() + static_cast<long>(i));
}

// dup2() or dup3() of one of our fds over another: the fd cache must forget what the
// target was and see the source's map there.
void op_dup_over(reader &in, state &st)
{
	uint8_t from = in.u8();
	uint8_t to = in.u8();
	if (st.fds.empty())
		return;
	fd_entry src = st.fds[from % st.fds.size()];
	fd_entry &dst = st.fds[to % st.fds.size()];
	int r = (to & 0x80) ? dup3(src.fd, dst.fd, O_CLOEXEC) : dup2(src.fd, dst.fd);
	if (r < 0)
		return; // dup3() of an fd onto itself
	int fd = dst.fd;
	dst = src;
	dst.fd = fd;
	u::bpf_map_info info;
	if (src.kind == fd_kind::map && (!map_info(fd, &info) || info.id != src.id)) {
		fprintf(stderr, "fd %d is map %u after dup2(), but bpfmap sees map %u\n", fd, src.id,
			info.id);
		abort();
	}
}

// close_range() of one of our fds, or its CLOSE_RANGE_CLOEXEC form (which closes nothing).
void op_close_range(reader &in, state &st)
{
	uint8_t s = in.u8();
	if (st.fds.empty())
		return;
	size_t i = s % st.fds.size();
	int fd = st.fds[i].fd;
	if (s & 0x80) {
		close_range(static_cast<unsigned>(fd), static_cast<unsigned>(fd), CLOSE_RANGE_CLOEXEC);
		return;
	}
	if (close_range(static_cast<unsigned>(fd), static_cast<unsigned>(fd), 0) == 0) {
		st.last_closed = fd;
		st.fds.erase(st.fds.begin() + static_cast<long>(i));
	}
}

void op_dup(reader &in, state &st)
{
	static const int lows[] = {0, 100, 1000, 1023, 1024, 2047, 2048, 3000};
	uint8_t s = in.u8();
	uint8_t l = in.u8();
	if (st.fds.empty() || st.fds.size() >= MAX_FDS)
		return;
	fd_entry e = st.fds[s % st.fds.size()];
	e.fd = fcntl(e.fd, F_DUPFD_CLOEXEC, lows[l % 8]);
	if (e.fd >= 0)
		st.fds.push_back(e);
}

// ---- The program side (include/bpfmap/bpfmap.h).

// Read every byte of n at p, so that a bad pointer or size shows here.
uint8_t touch(const void *p, size_t n)
{
	const volatile uint8_t *c = static_cast<const volatile uint8_t *>(p);
	uint8_t x = 0;
	for (size_t i = 0; i < n; i++)
		x ^= c[i];
	return x;
}

void commit_record(state &st, size_t i, uint64_t flags, bool discard)
{
	record_entry r = st.records[i];
	st.records.erase(st.records.begin() + static_cast<long>(i));
	if (r.producer >= 0) {
		st.producer_records[r.producer]--;
		if (discard)
			st.producers[r.producer]->discard(r.data);
		else
			st.producers[r.producer]->submit(r.data);
		return;
	}
	st.handles[r.handle].records--;
	if (discard)
		bpfmap_ringbuf_discard(r.data, flags);
	else
		bpfmap_ringbuf_submit(r.data, flags);
}

struct drain_ctx {
	uint8_t stop_at;
	int seen;
};

long drain_cb(const void *data, uint64_t size, void *ctx)
{
	auto *c = static_cast<drain_ctx *>(ctx);
	touch(data, size);
	return ++c->seen == c->stop_at;
}

void op_prog(reader &in, state &st)
{
	uint8_t s = in.u8();
	uint8_t h = in.u8();
	if (s % 16 == 0) {
		const fd_entry *e;
		int fd = pick_fd(in, st, &e);
		if (st.handles.size() >= MAX_HANDLES)
			return;
		bpfmap_map *m = bpfmap_map_get(fd);
		if (!m)
			return;
		u::bpf_map_info info;
		if (!map_info(fd, &info)) {
			fprintf(stderr, "bpfmap_map_get(%d) gave a handle, but the fd has no map info\n", fd);
			abort();
		}
		st.handles.push_back({m, info.type, info.key_size, info.value_size,
				      value_bytes(info.type, info.value_size), info.map_flags});
		return;
	}
	if (st.handles.empty())
		return;
	size_t hi = h % st.handles.size();
	handle_entry &he = st.handles[hi];
	bpfmap_map *m = he.map;
	// Program-side pointers are valid for the map's sizes, as the verifier ensures.
	auto key_ptr = [&] {
		void *k = bufs[0] + BUF_SIZE - he.key_size;
		fill(in, k, he.key_size);
		return k;
	};
	auto value_ptr = [&](bool in_value) {
		void *v = bufs[1] + BUF_SIZE - he.value_size;
		if (in_value)
			fill(in, v, he.value_size);
		return v;
	};
	bool ro = he.flags & u::BPF_F_RDONLY_PROG;
	TRACE("prog op %d on handle %zu (type %u)\n", s % 16, hi, he.type);
	switch (s % 16) {
	case 1:
		if (!he.records) {
			bpfmap_map_put(m);
			st.handles.erase(st.handles.begin() + static_cast<long>(hi));
		}
		break;
	case 2: case 3: {
		void *v = bpfmap_map_lookup_elem(m, key_ptr());
		uint8_t w = in.u8();
		if (v) {
			touch(v, he.value_size);
			if (!ro && (w & 1))
				memset(v, w, he.value_size);
		}
		break;
	}
	case 4: {
		void *k = key_ptr();
		void *v = bpfmap_map_lookup_percpu_elem(m, k, in.pick32());
		if (v)
			touch(v, he.value_size);
		break;
	}
	case 5: case 6: {
		void *k = key_ptr();
		void *v = value_ptr(true);
		bpfmap_map_update_elem(m, k, v, in.pick64());
		break;
	}
	case 7:
		bpfmap_map_delete_elem(m, key_ptr());
		break;
	case 8: {
		void *v = value_ptr(true);
		bpfmap_map_push_elem(m, v, in.pick64());
		break;
	}
	case 9:
		bpfmap_map_pop_elem(m, value_ptr(false));
		break;
	case 10:
		bpfmap_map_peek_elem(m, value_ptr(true));
		break;
	case 11: { // ring buffer reserve
		uint64_t size = in.pick32();
		uint64_t flags = in.pick64();
		if (st.records.size() >= MAX_RECORDS)
			break;
		void *r = bpfmap_ringbuf_reserve(m, size, flags);
		TRACE("reserve(%llu, %llu) = %p\n", (unsigned long long)size, (unsigned long long)flags, r);
		if (r) {
			memset(r, 0x5a, size);
			st.records.push_back({r, size, static_cast<int>(hi), -1});
			he.records++;
		}
		break;
	}
	case 12: { // submit or discard
		uint8_t i = in.u8();
		uint64_t flags = in.pick64();
		if (!st.records.empty())
			commit_record(st, i % st.records.size(), flags, i & 0x80);
		break;
	}
	case 13: { // output: sizes a buffer holds, or so large the ring must refuse them
		uint64_t size = in.pick32();
		uint64_t flags = in.pick64();
		if (size > BUF_SIZE && size < (1U << 30))
			size = BUF_SIZE;
		bpfmap_ringbuf_output(m, size <= BUF_SIZE ? bufs[1] + BUF_SIZE - size : bufs[1], size,
				      flags);
		break;
	}
	case 14:
		bpfmap_ringbuf_query(m, in.pick64());
		break;
	default: {
		drain_ctx c{in.u8(), 0};
		bpfmap_user_ringbuf_drain(m, drain_cb, &c, in.pick64());
		break;
	}
	}
}

// ---- The C++ ring API: consumers and user-ring producers.

void op_ring(reader &in, state &st)
{
	uint8_t s = in.u8();
	uint8_t i = in.u8();
	const fd_entry *e;
	TRACE("ring op %d, %d\n", s % 8, i);
	switch (s % 8) {
	case 0: {
		int fd = pick_fd(in, st, &e);
		auto c = std::make_unique<bpfmap::RingConsumer>();
		uint8_t stop = in.u8();
		auto cb = [stop, n = 0](const void *data, size_t size) mutable {
			touch(data, size);
			return ++n == stop ? -1 : 0;
		};
		if (st.consumers.size() < 4 && bpfmap::RingConsumer::open(fd, cb, *c) == 0)
			st.consumers.push_back(std::move(c));
		break;
	}
	case 1:
		if (!st.consumers.empty()) {
			auto &c = st.consumers[i % st.consumers.size()];
			if (i & 0x80)
				c->poll(0);
			else
				c->consume();
		}
		break;
	case 2: {
		int fd = pick_fd(in, st, &e);
		auto p = std::make_unique<bpfmap::UserRingProducer>();
		if (st.producers.size() < 4 && bpfmap::UserRingProducer::open(fd, *p) == 0) {
			st.producers.push_back(std::move(p));
			st.producer_records.push_back(0);
		}
		break;
	}
	case 3: {
		uint64_t size = in.pick32();
		if (st.producers.empty() || st.records.size() >= MAX_RECORDS)
			break;
		size_t pi = i % st.producers.size();
		int err;
		void *r = st.producers[pi]->reserve(size, &err);
		if (r) {
			memset(r, 0xa5, size);
			st.records.push_back({r, size, -1, static_cast<int>(pi)});
			st.producer_records[pi]++;
		}
		break;
	}
	case 4:
		if (!st.records.empty())
			commit_record(st, i % st.records.size(), 0, i & 0x80);
		break;
	case 5:
		if (!st.consumers.empty())
			st.consumers.erase(st.consumers.begin() +
					   static_cast<long>(i % st.consumers.size()));
		break;
	case 6: { // epoll_ctl() of an fd, a ring's included, into the input's epoll set
		int fd = pick_fd(in, st, &e);
		uint32_t events = in.pick32();
		if (st.epfd < 0)
			st.epfd = epoll_create1(EPOLL_CLOEXEC);
		epoll_event ev{};
		ev.events = events;
		ev.data.u64 = i;
		static const int ops[] = {EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL, 0};
		epoll_ctl(st.epfd, ops[i % 4], fd, (i & 0x40) ? nullptr : &ev);
		break;
	}
	default: { // epoll_wait() without sleeping
		epoll_event evs[8];
		if (st.epfd >= 0)
			epoll_wait(st.epfd, evs, 1 + i % 8, 0);
		break;
	}
	}
}

// ---- mmap() of map fds, and writes where the mapping allows them.

void op_mmap(reader &in, state &st)
{
	uint8_t s = in.u8();
	uint8_t i = in.u8();
	switch (s % 5) {
	case 0: {
		const fd_entry *e;
		int fd = pick_fd(in, st, &e);
		static const int prots[] = {PROT_READ, PROT_READ | PROT_WRITE, PROT_WRITE,
					    PROT_NONE, PROT_READ | PROT_EXEC, PROT_READ | PROT_WRITE};
		static const int flags[] = {MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE,
					    MAP_SHARED | MAP_POPULATE};
		uint8_t p = in.u8();
		uint32_t pages = in.pick32();
		uint32_t off_pages = in.pick32();
		size_t len = pages < 4096 ? pages * PAGE : pages;
		off_t off = static_cast<off_t>(off_pages < 4096 ? off_pages * PAGE : off_pages);
		if (st.mappings.size() >= MAX_MAPPINGS)
			break;
		int prot = prots[p % 6];
		void *addr = mmap(nullptr, len, prot, flags[(p >> 3) % 4], fd, off);
		TRACE("mmap(%zu, %d, %#x, fd %d, %lld) = %p\n", len, prot, flags[(p >> 3) % 4], fd,
		      (long long)off, addr);
		if (addr == MAP_FAILED)
			break;
		auto *a = static_cast<uint8_t *>(addr);
		bool ours = e && e->kind == fd_kind::map;
		// What mmap() gave of a map must be there: one read per page.
		if (ours && (prot & (PROT_READ | PROT_WRITE)))
			for (size_t o = 0; o < len; o += PAGE)
				touch(a + o, 1);
		st.mappings.push_back({a, (len + PAGE - 1) & ~(PAGE - 1), prot, ours,
				       ours && is_ring(e->type)});
		break;
	}
	case 1: { // write through a writable mapping, as user space may
		uint32_t off = in.pick32();
		uint8_t n = in.u8();
		if (st.mappings.empty())
			break;
		mapping_entry &m = st.mappings[i % st.mappings.size()];
		// A ring's positions and record headers are what the library reads and trusts
		// least: writing them is scribbling (consumers and producers elsewhere may
		// write them, but the checks on them are another part of issue 18).
		if (!(m.prot & PROT_WRITE) || !m.map || (m.ring && !scribble)) {
			in.bytes(bufs[3], n);
			break;
		}
		off %= m.len;
		TRACE("write %d bytes at %u of mapping %p\n", n, off, m.addr);
		in.bytes(m.addr + off, std::min<size_t>(n, m.len - off));
		break;
	}
	case 2: { // unmap the first pages of one
		uint32_t pages = in.pick32();
		if (st.mappings.empty())
			break;
		size_t mi = i % st.mappings.size();
		mapping_entry &m = st.mappings[mi];
		size_t len = std::min<size_t>(m.len, size_t{pages} * PAGE);
		if (len == 0 || len == m.len) {
			munmap(m.addr, m.len);
			st.mappings.erase(st.mappings.begin() + static_cast<long>(mi));
			break;
		}
		if (munmap(m.addr, len) == 0) {
			m.addr += len;
			m.len -= len;
		}
		break;
	}
	case 4: { // mremap(), which may move a mapping but never grow one past its map
		uint32_t pages = in.pick32();
		if (st.mappings.empty())
			break;
		mapping_entry &m = st.mappings[i % st.mappings.size()];
		size_t len = pages < 4096 ? size_t{pages} * PAGE : pages;
		void *addr = mremap(m.addr, m.len, len, (i & 0x80) ? MREMAP_MAYMOVE : 0);
		TRACE("mremap(%p, %zu, %zu) = %p\n", m.addr, m.len, len, addr);
		if (addr == MAP_FAILED)
			break;
		m.addr = static_cast<uint8_t *>(addr);
		m.len = (len + PAGE - 1) & ~(PAGE - 1);
		if (m.map && (m.prot & (PROT_READ | PROT_WRITE)))
			for (size_t o = 0; o < m.len; o += PAGE)
				touch(m.addr + o, 1);
		break;
	}
	default: {
		static const int prots[] = {PROT_READ, PROT_READ | PROT_WRITE, PROT_NONE, PROT_EXEC};
		uint8_t p = in.u8();
		if (st.mappings.empty())
			break;
		mapping_entry &m = st.mappings[i % st.mappings.size()];
		if (mprotect(m.addr, m.len, prots[p % 4]) == 0)
			m.prot = prots[p % 4];
		break;
	}
	}
}

// ---- The C++ map handle (include/bpfmap/map.hpp).

void op_cxx(reader &in, state &st)
{
	const fd_entry *e;
	int fd = pick_fd(in, st, &e);
	uint8_t s = in.u8();
	bpfmap::Map m;
	if (bpfmap::Map::from_fd(fd, m) != 0)
		return;
	bpfmap::MapInfo info;
	m.info(info);
	int n = 0;
	for (auto it = m.begin(); n < (s & 15) && !(it == m.end()); ++it, n++)
		touch((*it).data(), (*it).size());
}

// ---- Writes into a live map's file (BPFMAP_FUZZ_SCRIBBLE=1 only).

void op_scribble(reader &in, state &st)
{
	const fd_entry *e;
	int fd = pick_fd(in, st, &e);
	uint32_t off = in.pick32();
	uint8_t n = in.u8() % 17;
	uint8_t words[16];
	in.bytes(words, n);
	struct stat sb;
	if (!scribble || !e || e->kind != fd_kind::map || fstat(fd, &sb) != 0 || sb.st_size <= 0)
		return;
	int rw = open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDWR | O_CLOEXEC);
	if (rw < 0)
		return;
	TRACE("scribble %d bytes at %llu of %lld (fd %d)\n", n,
	      (unsigned long long)(off % static_cast<uint64_t>(sb.st_size)), (long long)sb.st_size, fd);
	if (pwrite(rw, words, n, static_cast<off_t>(off % static_cast<uint64_t>(sb.st_size))) < 0)
		perror("scribble");
	close(rw);
}

// ---- Teardown and the leak check.

void remove_entries(const std::string &dir, bool keep_bookkeeping)
{
	DIR *d = opendir(dir.c_str());
	if (!d)
		return;
	while (dirent *ent = readdir(d)) {
		std::string name = ent->d_name;
		if (name == "." || name == "..")
			continue;
		if (keep_bookkeeping && (name == ".bpfmap-ids" || name == ".bpfmap-by-id" ||
					 name == ".bpfmap-btf-by-id" || name == "sub"))
			continue;
		std::string path = dir + "/" + name;
		if (unlink(path.c_str()) != 0 && errno == EISDIR)
			rmdir(path.c_str());
		else if (errno == EISDIR || errno == EPERM)
			rmdir(path.c_str());
	}
	closedir(d);
}

size_t count_entries(const std::string &dir)
{
	DIR *d = opendir(dir.c_str());
	size_t n = 0;
	if (!d)
		return 0;
	while (dirent *ent = readdir(d))
		n += ent->d_name[0] != '.';
	closedir(d);
	return n;
}

// Walk every id, which reaps those nothing holds any more.
void reap_ids(int cmd)
{
	u::bpf_attr a{};
	while (sys(cmd, &a, sizeof(a)) == 0)
		a.id.start_id = a.id.next_id;
}

void teardown(state &st)
{
	while (!st.records.empty())
		commit_record(st, st.records.size() - 1, u::BPF_RB_NO_WAKEUP, true);
	st.consumers.clear();
	st.producers.clear();
	for (handle_entry &h : st.handles)
		bpfmap_map_put(h.map);
	for (mapping_entry &m : st.mappings)
		munmap(m.addr, m.len);
	for (fd_entry &e : st.fds)
		close(e.fd);
	if (st.epfd >= 0)
		close(st.epfd);
	remove_entries(root, true);
	remove_entries(sub_dir, false);
	remove_entries(outside_dir, false);
	reap_ids(u::MAP_GET_NEXT_ID);
	reap_ids(u::BTF_GET_NEXT_ID);
	size_t maps = count_entries(root + "/.bpfmap-by-id");
	size_t btfs = count_entries(root + "/.bpfmap-btf-by-id");
	if (maps || btfs) {
		fprintf(stderr, "leak: %zu map ids and %zu BTF ids remain after the input's teardown\n",
			maps, btfs);
		abort();
	}
}

void make_dir(const std::string &path)
{
	if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
		perror(path.c_str());
		exit(1);
	}
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***)
{
	// A pin root of this process's own, under $BPFMAP_FUZZ_TMP (scripts/fuzz.sh removes it).
	const char *tmp = getenv("BPFMAP_FUZZ_TMP");
	std::string base = std::string(tmp && *tmp ? tmp : "/tmp") + "/bpfmap-fuzz-XXXXXX";
	std::vector<char> dir(base.begin(), base.end());
	dir.push_back(0);
	if (!mkdtemp(dir.data())) {
		perror("mkdtemp");
		exit(1);
	}
	root = std::string(dir.data()) + "/root";
	sub_dir = root + "/sub";
	outside_dir = std::string(dir.data()) + "/outside";
	static std::string top = dir.data();
	atexit([] {
		std::string cmd = "rm -rf '" + top + "'";
		if (system(cmd.c_str()) != 0)
			fprintf(stderr, "could not remove %s\n", top.c_str());
	});
	make_dir(root);
	make_dir(sub_dir);
	make_dir(outside_dir);
	setenv("BPFMAP_PIN_ROOT", root.c_str(), 1);
	scribble = getenv("BPFMAP_FUZZ_SCRIBBLE") && atoi(getenv("BPFMAP_FUZZ_SCRIBBLE"));
	trace = getenv("BPFMAP_FUZZ_TRACE") && atoi(getenv("BPFMAP_FUZZ_TRACE"));

	// Regions the machine cannot hold fail with EFBIG, which bpfmap reports as ENOMEM.
	signal(SIGXFSZ, SIG_IGN);
	rlimit fl{FSIZE_LIMIT, FSIZE_LIMIT};
	setrlimit(RLIMIT_FSIZE, &fl);
	// Room for dup() to fds past the fd cache's first chunks.
	rlimit nf;
	if (getrlimit(RLIMIT_NOFILE, &nf) == 0 && nf.rlim_cur < 4096) {
		nf.rlim_cur = std::min<rlim_t>(4096, nf.rlim_max);
		setrlimit(RLIMIT_NOFILE, &nf);
	}

	for (auto &b : bufs)
		b = static_cast<uint8_t *>(calloc(1, BUF_SIZE));
	attr_buf = static_cast<uint8_t *>(calloc(1, ATTR_BUF));
	ncpus = bpfmap_num_possible_cpus();

	devnull_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	dir_fd = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int p[2];
	if (pipe2(p, O_CLOEXEC) == 0)
		pipe_fd = p[0];
	// A regular file on the pin root's file system that is not a map.
	junk_fd = open(root.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	std::vector<char> junk(2 * PAGE, 'j');
	if (junk_fd < 0 || write(junk_fd, junk.data(), junk.size()) < 0) {
		perror("junk file");
		exit(1);
	}
	return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	reader in(data, size);
	state st;
	for (int n = 0; n < MAX_OPS && !in.empty(); n++) {
		uint8_t op = in.u8() % 16;
		if (trace)
			fprintf(stderr, "op %d: %d fds, %zu handles, %zu records, %zu mappings\n", op,
				static_cast<int>(st.fds.size()), st.handles.size(), st.records.size(),
				st.mappings.size());
		switch (op) {
		case 0: case 1:
			op_create(in, st);
			break;
		case 2: case 3:
			op_elem(in, st);
			break;
		case 4:
			op_batch(in, st);
			break;
		case 5:
			op_freeze(in, st);
			break;
		case 6:
			op_info(in, st);
			break;
		case 7:
			op_pin(in, st, in.u8() & 1);
			break;
		case 8:
			op_id(in, st);
			break;
		case 9:
			op_btf(in, st);
			break;
		case 10:
			op_raw(in, st);
			break;
		case 11:
			switch (in.u8() % 4) {
			case 0:
				op_dup(in, st);
				break;
			case 1:
				op_close(in, st);
				break;
			case 2:
				op_dup_over(in, st);
				break;
			default:
				op_close_range(in, st);
				break;
			}
			break;
		case 12:
			op_prog(in, st);
			break;
		case 13:
			op_ring(in, st);
			break;
		case 14:
			op_mmap(in, st);
			break;
		default:
			if (in.u8() & 1)
				op_scribble(in, st);
			else
				op_cxx(in, st);
			break;
		}
	}
	teardown(st);
	return 0;
}
