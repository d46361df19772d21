// Kernel-differential tests: every call is made twice, once to the running kernel's bpf(2)
// and once to bpfmap_bpf(), with the same raw attr bytes (only map fds and pointers to each
// side's own buffers differ). The two results must agree: success or failure, errno, and
// every byte written back (values, next keys, info structs with the map id masked out,
// and the attr itself).
//
// The attrs are raw byte buffers laid out as the 6.18 kernel's 168-byte union bpf_attr
// (uapi618.h), so the installed (older) <linux/bpf.h> is never used.
//
// Needs root and a kernel that answers bpf(2); otherwise every test is skipped.
// Random sequences print their seed; BPFMAP_DIFF_SEED=<n> replays one. Known bpfmap bugs are
// listed in kKnown in kernel_diff.cc (printed, not failed, unless BPFMAP_DIFF_STRICT=1).
//
// This header is the harness every kernel_diff_*_test.cc shares; they are linked into one
// binary, kernel_diff_test, whose seed line and known-mismatch summary kernel_diff.cc prints.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "bpfmap/bpfmap.h"
#include "cpu_util.h"
#include "hex.h"
#include "uapi618.h"

namespace kernel_diff {

using namespace uapi618;
using bpfmap::test::hex;
using cpu_util::possible_cpus;

bool is_hash(uint32_t type);
bool is_percpu(uint32_t type);

// Bytes of one value in a syscall buffer: for per-CPU maps, one 8-byte-aligned slot per CPU.
uint32_t value_bytes(uint32_t type, uint32_t vs);

// ---- small helpers -------------------------------------------------------------------

std::string errname(int e);
uint64_t fnv(const std::string &s);
uint64_t global_seed();
std::string seed_str();

// ---- is the oracle there? --------------------------------------------------------------

struct Probe {
	bool ok = false;
	std::string why;
};

const Probe &probe();

#define SKIP_WITHOUT_KERNEL()                                                   \
	do {                                                                    \
		if (!kernel_diff::probe().ok)                                   \
			GTEST_SKIP() << "kernel bpf(2) unavailable, skipping: " \
				     << kernel_diff::probe().why;               \
	} while (0)

// ---- known bpfmap mismatches -------------------------------------------------------------

bool strict();
// A failure, unless it is a known mismatch listed in kernel_diff.cc (then printed).
void report_mismatch(const std::string &label, const std::string &text);

#define MISMATCH(label, stream)                                 \
	do {                                                    \
		std::ostringstream mm_;                         \
		mm_ << stream;                                  \
		kernel_diff::report_mismatch(label, mm_.str()); \
	} while (0)

// ---- a request, run on both sides -------------------------------------------------------

// One bpf() call. attr holds the raw bytes; map fds and pointers into per-side buffers are
// patched in separately for each side.
struct Req {
	int cmd;
	unsigned size = KATTR;
	bool null_attr = false;
	std::vector<uint8_t> attr;
	struct FdP {
		size_t off;
		int k, u;
	};
	struct PtrP {
		int where; // -1: the attr; else a buffer index
		size_t off;
		int buf;
	};
	std::vector<FdP> fds;
	std::vector<PtrP> ptrs;
	std::vector<std::vector<uint8_t>> bufs;

	explicit Req(int c, unsigned sz = KATTR)
		: cmd(c)
		, size(sz)
		, attr(std::max<size_t>(KATTR, std::min<size_t>(sz, 8192)), 0)
	{
	}
	void u32(size_t off, uint32_t v) { put32(attr, off, v); }
	void u64(size_t off, uint64_t v) { put64(attr, off, v); }
	void fd(size_t off, int k, int u) { fds.push_back({off, k, u}); }
	// Add a buffer and point attr (or another buffer, `where`) at it.
	int buf(size_t off, std::vector<uint8_t> init, int where = -1)
	{
		bufs.push_back(std::move(init));
		int i = static_cast<int>(bufs.size()) - 1;
		ptrs.push_back({where, off, i});
		return i;
	}
};

struct Res {
	long ret = 0;
	int err = 0;
	std::vector<uint8_t> attr;
	std::vector<std::vector<uint8_t>> bufs;
};

struct Both {
	Res k, u;
};

// One bpf() call on the kernel or on bpfmap: the result, errno set on failure.
long call_side(bool kernel, int cmd, void *attr, unsigned size);
Res run_side(bool kernel, const Req &q);

struct Mask {
	int buf; // -1: attr
	size_t off, len;
};

std::string res_str(const Res &r);
const char *cmd_name(int cmd);
std::string describe(const Req &q);

// Empty if both sides agree.
std::string diff(const Req &q, const Both &b, const std::vector<Mask> &masks = {});

// Run q on both sides and record a failure if they differ. MAP_CREATE fds are closed.
Both check(const std::string &label, const Req &q, const std::vector<Mask> &masks = {},
	   bool *same = nullptr);

// ---- a map on both sides --------------------------------------------------------------

struct Pair {
	int k = -1, u = -1;
	uint32_t type = 0, ks = 0, vs = 0, max = 0, flags = 0;

	Pair() = default;
	Pair(const Pair &) = delete;
	Pair &operator=(const Pair &) = delete;
	Pair(Pair &&o) noexcept { *this = std::move(o); }
	Pair &operator=(Pair &&o) noexcept
	{
		if (this != &o) {
			reset();
			k = o.k;
			u = o.u;
			type = o.type;
			ks = o.ks;
			vs = o.vs;
			max = o.max;
			flags = o.flags;
			o.k = o.u = -1;
		}
		return *this;
	}
	~Pair() { reset(); }
	void reset();
	explicit operator bool() const { return k >= 0 && u >= 0; }
	uint32_t vb() const { return value_bytes(type, vs); }
};

Req create_req(uint32_t type, uint32_t ks, uint32_t vs, uint32_t max, uint32_t flags = 0,
	       const char *name = nullptr);

// One row of a table of MAP_CREATE attrs for a type's creation rules.
struct create_case {
	const char *name;
	uint32_t ks, vs, max, flags;
	uint64_t extra = 0;
};

Req create_req(uint32_t type, const create_case &c);

// Differences in FD_CLOEXEC and access mode between the two fds; empty if none.
std::string fd_modes(int k, int u);

// Create on both sides; compare the result, the fds' modes and the map info.
Pair create_both(const std::string &label, const Req &q);

// ---- element commands ------------------------------------------------------------------

enum class Ptr { BUF, NUL, BAD };

struct EA {
	const std::vector<uint8_t> *key = nullptr; // BUF: these bytes
	Ptr keyp = Ptr::BUF;
	const std::vector<uint8_t> *val = nullptr; // update: input value
	Ptr valp = Ptr::BUF;			   // value / next_key pointer
	uint64_t flags = 0;
	unsigned size = KATTR;
	std::vector<std::pair<size_t, uint8_t>> poke;
};

constexpr uint8_t SENTINEL = 0xa5;

// Buffer indices in the Req made by elem_req: key first (if any), then value/next_key.
Req elem_req(const Pair &p, int cmd, const EA &a);
// Index of the value / next_key buffer in a Req made by elem_req (or -1).
int out_buf(const Req &q);
Both elem(const std::string &label, const Pair &p, int cmd, const EA &a, bool *same = nullptr);
std::vector<uint8_t> u32key(uint32_t v);

// ---- OBJ_GET_INFO_BY_FD ------------------------------------------------------------------

// An info request of len bytes; the buffer is 4200 bytes: [0,len) is zero (or, with
// junk, [0,88) is 0x5a: output fields the kernel is expected to overwrite), and the rest a
// pattern that must survive.
Req info_req(int kfd, int ufd, uint32_t len, bool null_info = false, bool junk = false);
inline std::vector<Mask> id_mask() { return {{0, 4, 4}}; } // bpf_map_info.id is global per side
void info_check(const std::string &label, const Pair &p, uint32_t len = INFO_SIZE);

// ---- fixtures ---------------------------------------------------------------------------

class KernelDiff : public ::testing::Test {
protected:
	void SetUp() override { SKIP_WITHOUT_KERNEL(); }
};

Pair hash_pair(const std::string &label, uint32_t ks = 4, uint32_t vs = 8, uint32_t max = 8,
	       uint32_t flags = 0);
Pair array_pair(const std::string &label, uint32_t vs = 8, uint32_t max = 8, uint32_t flags = 0);

// Put key -> value on both sides (must succeed on both).
void fill(const Pair &p, uint32_t key, uint8_t v);

// ---- BPF programs on the kernel side ----------------------------------------------------

struct insn {
	uint8_t code;
	uint8_t regs; // dst in the low nibble, src in the high one
	int16_t off;
	int32_t imm;
};
static_assert(sizeof(insn) == 8);

// Load a socket filter and run it once on the calling thread's CPU; the bpf() errno or 0.
int kernel_prog_run(const std::vector<insn> &prog);

} // namespace kernel_diff
