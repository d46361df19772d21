// Kernel-differential tests of RINGBUF: creation, commands and mmap(), and the records a
// kernel program and bpfmap's program-side ring calls leave.
#include "kernel_diff.h"

#include <cerrno>
#include <cstring>
#include <string>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

namespace kernel_diff {
namespace {

// ==== RINGBUF ==============================================================================

// Ring buffers: creation rules (max_entries a power of two and a multiple of the page
// size, no key or value, BPF_F_NUMA_NODE the only flag), ENOTSUPP for every element and
// batch command, and which mmap()s of the fd the kernel allows.
TEST_F(KernelDiff, RingbufCreateCommandsAndMmap)
{
	const create_case cases[] = {
		{"ok", 0, 0, 4096, 0},
		{"8 pages", 0, 0, 8 * 4096, 0},
		{"3 pages", 0, 0, 3 * 4096, 0},
		{"half a page", 0, 0, 2048, 0},
		{"max_entries 0", 0, 0, 0, 0},
		{"max_entries 1", 0, 0, 1, 0},
		{"key_size 4", 4, 0, 4096, 0},
		{"value_size 4", 0, 4, 4096, 0},
		{"NUMA_NODE", 0, 0, 4096, F_NUMA_NODE},
		{"NO_PREALLOC", 0, 0, 4096, F_NO_PREALLOC},
		{"RDONLY", 0, 0, 4096, F_RDONLY},
		{"RDONLY_PROG", 0, 0, 4096, F_RDONLY_PROG},
		{"MMAPABLE", 0, 0, 4096, F_MMAPABLE},
		{"1<<19 (RB_OVERWRITE on newer kernels)", 0, 0, 4096, 1u << 19},
		{"map_extra 1", 0, 0, 4096, 0, 1},
	};
	for (uint32_t type : {T_RINGBUF, T_USER_RINGBUF}) {
		std::string t = type == T_RINGBUF ? "RINGBUF " : "USER_RINGBUF ";
		for (const create_case &c : cases)
			check(t + "create " + c.name, create_req(type, c));
		const uint32_t size = 4 * 4096;
		Pair p = create_both(t, create_req(type, 0, 0, size));
		ASSERT_TRUE(p);
		std::vector<uint8_t> key(4, 1), val(8, 2);
		for (Ptr kp : {Ptr::NUL, Ptr::BUF}) {
			EA a;
			a.keyp = kp;
			a.key = &key;
			a.val = &val;
			std::string n = t + (kp == Ptr::NUL ? "key NULL " : "key given ");
			elem(n + "lookup", p, C_LOOKUP, a);
			elem(n + "update", p, C_UPDATE, a);
			elem(n + "delete", p, C_DELETE, a);
			elem(n + "get_next_key", p, C_GET_NEXT_KEY, a);
			elem(n + "lookup_and_delete", p, C_LOOKUP_AND_DELETE, a);
		}
		for (int cmd :
		     {C_LOOKUP_BATCH, C_LOOKUP_AND_DELETE_BATCH, C_UPDATE_BATCH, C_DELETE_BATCH}) {
			Req q(cmd);
			q.fd(36, p.k, p.u);
			q.u32(32, 1);
			check(t + "batch cmd " + std::to_string(cmd), q);
		}
		struct M {
			int prot;
			size_t len, off;
		};
		const size_t pg = 4096, data = size;
		const M maps[] = {
			{PROT_READ | PROT_WRITE, pg, 0},
			{PROT_READ | PROT_WRITE, 2 * pg, 0},
			{PROT_READ | PROT_WRITE, pg, pg},
			{PROT_READ | PROT_WRITE, pg + 2 * data, pg},
			{PROT_READ, pg, 0},
			{PROT_READ, pg + 2 * data, pg},
			{PROT_READ, 2 * pg + 2 * data, 0},
			{PROT_READ, 3 * pg + 2 * data, 0},
			{PROT_READ, pg, pg + 2 * data},
			{PROT_READ, 2 * pg, pg + 2 * data},
			{PROT_READ | PROT_EXEC, pg, 0},
			{PROT_READ, pg, 100 * pg},
		};
		for (const M &m : maps) {
			void *km = mmap(nullptr, m.len, m.prot, MAP_SHARED, p.k,
					static_cast<off_t>(m.off));
			int ke = km == MAP_FAILED ? errno : 0;
			void *um = mmap(nullptr, m.len, m.prot, MAP_SHARED, p.u,
					static_cast<off_t>(m.off));
			int ue = um == MAP_FAILED ? errno : 0;
			EXPECT_EQ(ke, ue) << t << "mmap prot " << m.prot << " len " << m.len
					  << " off " << m.off << ": kernel " << errname(ke)
					  << ", bpfmap " << errname(ue);
			if (km != MAP_FAILED) {
				int kp = mprotect(km, pg, PROT_READ | PROT_WRITE) ? errno : 0;
				int up =
					um != MAP_FAILED && mprotect(um, pg, PROT_READ | PROT_WRITE)
						? errno
						: 0;
				EXPECT_EQ(kp, up) << t << "mprotect after mmap prot " << m.prot
						  << " off " << m.off;
				munmap(km, m.len);
			}
			if (um != MAP_FAILED)
				munmap(um, m.len);
		}
		EA f;
		elem(t + "FREEZE", p, C_FREEZE, f);
	}
}

// A kernel ring buffer written by a BPF program and a bpfmap one written through the
// program-side ABI, with the same reserve / submit / discard / output sequence (records
// that fit, that do not, that wrap): positions, record headers (length, busy and discard
// bits, page offset) and data bytes must be the same.
struct rb_op {
	uint32_t size;
	char what; // 's' submit, 'd' discard, 'o' output (8 bytes of 0x5a at most), 'q' query
	uint64_t flags = 0; // for 'q', what to query
};

// What output and query return, in op order ('o' and 'q' ops only).
constexpr int RB_RESULTS = 32;
constexpr int16_t RB_RESULTS_OFF = -512; // on the program's stack

// The ops, then the results into element 0 of results_fd (an array of RB_RESULTS u64).
std::vector<insn> ringbuf_prog(int map_fd, const std::vector<rb_op> &ops, int results_fd)
{
	const uint8_t R0 = 0, R1 = 1, R2 = 2, R3 = 3, R4 = 4, FP = 10;
	auto regs = [](uint8_t dst, uint8_t src) { return static_cast<uint8_t>(dst | src << 4); };
	std::vector<insn> p = {
		{0x7a, regs(FP, 0), -8,
		 0x5a5a5a5a},		     // *(u64 *)(fp - 8) = 0x5a5a5a5a (sign-extended)
		{0x62, regs(FP, 0), -16, 0}, // *(u32 *)(fp - 16) = 0: the results' key
	};
	for (int i = 0; i < RB_RESULTS; i++)
		p.push_back({0x7a, regs(FP, 0), static_cast<int16_t>(RB_RESULTS_OFF + 8 * i), 0});
	int results = 0;
	auto keep_r0 = [&] {
		p.push_back({0x7b, regs(FP, R0),
			     static_cast<int16_t>(RB_RESULTS_OFF + 8 * results++), 0});
	};
	for (const rb_op &op : ops) {
		p.push_back({0x18, regs(R1, 1), 0, map_fd});
		p.push_back({0, 0, 0, 0});
		if (op.what == 'q') {
			p.push_back({0xb7, regs(R2, 0), 0, static_cast<int32_t>(op.flags)});
			p.push_back({0x85, 0, 0, 134}); // bpf_ringbuf_query
			keep_r0();
			continue;
		}
		if (op.what == 'o') {
			p.push_back({0xbf, regs(R2, FP), 0, 0});
			p.push_back({0x07, regs(R2, 0), 0, -8});
			p.push_back({0xb7, regs(R3, 0), 0, static_cast<int32_t>(op.size)});
			p.push_back({0xb7, regs(R4, 0), 0, static_cast<int32_t>(op.flags)});
			p.push_back({0x85, 0, 0, 130}); // bpf_ringbuf_output
			keep_r0();
			continue;
		}
		p.push_back({0xb7, regs(R2, 0), 0, static_cast<int32_t>(op.size)});
		p.push_back({0xb7, regs(R3, 0), 0, 0});
		p.push_back({0x85, 0, 0, 131});		// bpf_ringbuf_reserve
		p.push_back({0x15, regs(R0, 0), 3, 0}); // if r0 == 0 skip the release
		p.push_back({0xbf, regs(R1, R0), 0, 0});
		p.push_back({0xb7, regs(R2, 0), 0, static_cast<int32_t>(op.flags)});
		p.push_back({0x85, 0, 0, op.what == 'd' ? 133 : 132}); // discard / submit
	}
	p.push_back({0x18, regs(R1, 1), 0, results_fd}); // bpf_map_update_elem(results, &0, R, 0)
	p.push_back({0, 0, 0, 0});
	p.push_back({0xbf, regs(R2, FP), 0, 0});
	p.push_back({0x07, regs(R2, 0), 0, -16});
	p.push_back({0xbf, regs(R3, FP), 0, 0});
	p.push_back({0x07, regs(R3, 0), 0, RB_RESULTS_OFF});
	p.push_back({0xb7, regs(R4, 0), 0, 0});
	p.push_back({0x85, 0, 0, 2});
	p.push_back({0xb7, regs(R0, 0), 0, 0});
	p.push_back({0x95, 0, 0, 0});
	return p;
}

std::vector<int64_t> bpfmap_ringbuf_ops(bpfmap_map *m, const std::vector<rb_op> &ops)
{
	const uint64_t pattern = 0x5a5a5a5a;
	std::vector<int64_t> results(RB_RESULTS, 0);
	size_t n = 0;
	for (const rb_op &op : ops) {
		if (op.what == 'q') {
			results[n++] = static_cast<int64_t>(bpfmap_ringbuf_query(m, op.flags));
			continue;
		}
		if (op.what == 'o') {
			results[n++] = bpfmap_ringbuf_output(m, &pattern, op.size, op.flags);
			continue;
		}
		void *rec = bpfmap_ringbuf_reserve(m, op.size, 0);
		if (!rec)
			continue;
		if (op.what == 'd')
			bpfmap_ringbuf_discard(rec, op.flags);
		else
			bpfmap_ringbuf_submit(rec, op.flags);
	}
	return results;
}

TEST_F(KernelDiff, RingbufRecordsMatchKernelPrograms)
{
	const size_t pg = 4096, size = 2 * pg;
	Pair p = create_both("RINGBUF records", create_req(T_RINGBUF, 0, 0, size));
	ASSERT_TRUE(p);
	bpfmap_map *m = bpfmap_map_get(p.u);
	ASSERT_NE(m, nullptr);
	struct view {
		uint64_t *cons;
		const uint64_t *prod;
		const uint8_t *data;
	};
	auto map_ring = [&](int fd, view *v) {
		void *c = mmap(nullptr, pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		void *d = mmap(nullptr, pg + 2 * size, PROT_READ, MAP_SHARED, fd, pg);
		ASSERT_NE(c, MAP_FAILED);
		ASSERT_NE(d, MAP_FAILED);
		v->cons = static_cast<uint64_t *>(c);
		v->prod = static_cast<const uint64_t *>(d);
		v->data = static_cast<const uint8_t *>(d) + pg;
	};
	view k{}, u{};
	map_ring(p.k, &k);
	map_ring(p.u, &u);
	ASSERT_TRUE(k.cons && u.cons);
	auto compare = [&](const std::string &when) {
		EXPECT_EQ(*k.prod, *u.prod) << when << ": producer_pos";
		EXPECT_EQ(*k.cons, *u.cons) << when << ": consumer_pos";
		for (size_t off = 0; off < size; off += 4) {
			uint32_t kw, uw;
			memcpy(&kw, k.data + off, 4);
			memcpy(&uw, u.data + off, 4);
			if (kw != uw) {
				ADD_FAILURE() << when << ": data word at " << off << ": kernel "
					      << std::hex << kw << ", bpfmap " << uw;
				return;
			}
		}
	};
	const std::vector<rb_op> queries = {
		{0, 'q', 0}, {0, 'q', 1}, {0, 'q', 2}, {0, 'q', 3}, {0, 'q', 4}};
	std::vector<std::vector<rb_op>> rounds = {
		{{8, 's'},
		 {100, 'd'},
		 {1, 's', 1},
		 {3000, 's', 2},
		 {4000, 's'},
		 {5, 'o'},
		 {8, 'o', 3},
		 {3, 'o', 4}},
		{{size, 's'}, {size - 8, 's'}, {size - 16, 'd'}, {0, 's'}, {4000, 's'}, {8, 'o'}},
		{{2000, 's'},
		 {2500, 'd'},
		 {700, 's'},
		 {8, 'o'},
		 {8, 'o', 2},
		 {4000, 's'},
		 {8, 'o'}},
	};
	for (auto &ops : rounds)
		ops.insert(ops.end(), queries.begin(), queries.end());
	std::vector<uint8_t> results_req(KATTR, 0);
	put32(results_req, 0, T_ARRAY);
	put32(results_req, 4, 4);
	put32(results_req, 8, 8 * RB_RESULTS);
	put32(results_req, 12, 1);
	long results_fd = kernel_bpf(C_MAP_CREATE, results_req.data(), KATTR);
	ASSERT_GE(results_fd, 0) << strerror(errno);
	int round = 0;
	for (const auto &ops : rounds) {
		std::string t = "round " + std::to_string(round++);
		int err = kernel_prog_run(ringbuf_prog(p.k, ops, static_cast<int>(results_fd)));
		ASSERT_EQ(err, 0) << t << ": kernel program: " << strerror(err);
		std::vector<int64_t> ures = bpfmap_ringbuf_ops(m, ops), kres(RB_RESULTS);
		uint32_t zero = 0;
		std::vector<uint8_t> l(KATTR, 0);
		put32(l, 0, static_cast<uint32_t>(results_fd));
		put64(l, 8, reinterpret_cast<uintptr_t>(&zero));
		put64(l, 16, reinterpret_cast<uintptr_t>(kres.data()));
		ASSERT_EQ(kernel_bpf(C_LOOKUP, l.data(), KATTR), 0);
		EXPECT_EQ(kres, ures) << t << ": output and query results (op order)";
		compare(t);
		// Consume everything (the consumer only moves its position), so the next round
		// wraps around the end.
		*k.cons = *k.prod;
		*u.cons = *u.prod;
	}
	EXPECT_GT(*u.prod, size) << "the rounds were meant to wrap";
	close(static_cast<int>(results_fd));
	munmap(k.cons, pg);
	munmap(u.cons, pg);
	munmap(const_cast<uint64_t *>(k.prod), pg + 2 * size);
	munmap(const_cast<uint64_t *>(u.prod), pg + 2 * size);
	bpfmap_map_put(m);
}

} // namespace
} // namespace kernel_diff
