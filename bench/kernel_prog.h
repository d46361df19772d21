// Small BPF programs for measuring the kernel's own in-program costs: build the bytecode,
// load it, run it with BPF_PROG_TEST_RUN. Shared by map_bench and ringbuf_bench.
#pragma once

#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

namespace kernel_prog {

inline bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm)
{
	bpf_insn i{};
	i.code = code;
	i.dst_reg = dst & 0xf;
	i.src_reg = src & 0xf;
	i.off = off;
	i.imm = imm;
	return i;
}

// r<dst> = the map behind map_fd (two instructions).
inline void load_map(std::vector<bpf_insn> &p, uint8_t dst, int map_fd)
{
	p.push_back(insn(BPF_LD | BPF_DW | BPF_IMM, dst, BPF_PSEUDO_MAP_FD, 0, map_fd));
	p.push_back(insn(0, 0, 0, 0, 0));
}

// The kernel's bpf(2), with the attr's size given (by default the whole union).
inline long kernel_bpf(int cmd, union bpf_attr *a, unsigned size = sizeof(union bpf_attr))
{
	return syscall(__NR_bpf, cmd, a, size);
}

// Load p as a program of this type (XDP by default): its fd, or -1 with the verifier's
// reason (its last lines) in *why.
inline int load_prog(const std::vector<bpf_insn> &p, std::string *why,
		     bpf_prog_type type = BPF_PROG_TYPE_XDP)
{
	static char log[65536];
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.prog_type = type;
	a.insns = reinterpret_cast<uintptr_t>(p.data());
	a.insn_cnt = static_cast<uint32_t>(p.size());
	a.license = reinterpret_cast<uintptr_t>("GPL");
	int fd = static_cast<int>(kernel_bpf(BPF_PROG_LOAD, &a));
	if (fd >= 0)
		return fd;
	int err = errno;
	a.log_buf = reinterpret_cast<uintptr_t>(log); // again, for the verifier's reason
	a.log_size = sizeof(log);
	a.log_level = 1;
	kernel_bpf(BPF_PROG_LOAD, &a);
	std::string l(log);
	*why = std::string("BPF_PROG_LOAD: ") + strerror(err) + ": " +
	       l.substr(l.size() > 300 ? l.size() - 300 : 0);
	return -1;
}

// An array map of n probes of size bytes each (n a power of two), probe(i) the bytes of
// probe i, BATCH probes per bpf(2): one call per probe took ~18 s for the 2^24 probes of
// a 10^7-entry map. Its fd, or -1.
template <typename F> int make_probes(uint32_t n, uint32_t size, F &&probe)
{
	constexpr uint32_t BATCH = 4096;
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_type = BPF_MAP_TYPE_ARRAY;
	a.key_size = 4;
	a.value_size = size;
	a.max_entries = n;
	int fd = static_cast<int>(kernel_bpf(BPF_MAP_CREATE, &a));
	std::vector<uint32_t> keys(BATCH);
	std::vector<unsigned char> values(size_t(BATCH) * size);
	for (uint32_t i = 0; fd >= 0 && i < n; i += BATCH) {
		uint32_t count = std::min(BATCH, n - i);
		for (uint32_t j = 0; j < count; j++) {
			keys[j] = i + j;
			memcpy(&values[size_t(j) * size], probe(i + j), size);
		}
		memset(&a, 0, sizeof(a));
		a.batch.map_fd = static_cast<uint32_t>(fd);
		a.batch.keys = reinterpret_cast<uintptr_t>(keys.data());
		a.batch.values = reinterpret_cast<uintptr_t>(values.data());
		a.batch.count = count;
		if (kernel_bpf(BPF_MAP_UPDATE_BATCH, &a) != 0) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

// What a probe loop does with each probe it picks. mix: an update in upd_pct of the
// iterations, evenly spread, and a lookup in the others.
enum class probe_op { none, lookup, update, mix };

// A program that `loop` times picks a random probe (bpf_get_prandom_u32() & mask) from
// the array map probes_fd and looks it up in the map target_fd (lookup), or stores it there
// as key and value with BPF_ANY (update: the probe holds the key and at least value_size
// bytes); probe_op::none only picks. Run with and without the map call, the difference
// per iteration is what the kernel's own helper costs, net of the loop and the pick.
inline int load_probe_loop(int probes_fd, uint32_t mask, int target_fd, probe_op op, int loop,
			   std::string *why, uint32_t upd_pct = 0)
{
	std::vector<bpf_insn> p = {
		insn(BPF_ALU64 | BPF_MOV | BPF_K, 6, 0, 0, 0),		     // r6 = 0
		insn(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_get_prandom_u32), // loop: r0 = random
		insn(BPF_ALU64 | BPF_AND | BPF_K, 0, 0, 0, static_cast<int32_t>(mask)),
		insn(BPF_STX | BPF_MEM | BPF_W, 10, 0, -4, 0), // *(u32 *)(fp - 4) = r0
	};
	load_map(p, 1, probes_fd);
	p.push_back(insn(BPF_ALU64 | BPF_MOV | BPF_X, 2, 10, 0, 0));
	p.push_back(insn(BPF_ALU64 | BPF_ADD | BPF_K, 2, 0, 0, -4));
	p.push_back(insn(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem)); // r0 = &probe
	auto map_call = [&](std::vector<bpf_insn> &c, bool update) {
		c.push_back(insn(BPF_ALU64 | BPF_MOV | BPF_X, 2, 0, 0, 0)); // key = probe
		if (update) {
			c.push_back(insn(BPF_ALU64 | BPF_MOV | BPF_X, 3, 0, 0, 0)); // value too
			c.push_back(insn(BPF_ALU64 | BPF_MOV | BPF_K, 4, 0, 0, BPF_ANY));
		}
		load_map(c, 1, target_fd);
		c.push_back(insn(BPF_JMP | BPF_CALL, 0, 0, 0,
				 update ? BPF_FUNC_map_update_elem : BPF_FUNC_map_lookup_elem));
	};
	std::vector<bpf_insn> call;
	if (op == probe_op::lookup || op == probe_op::update) {
		map_call(call, op == probe_op::update);
	} else if (op == probe_op::mix) {
		// Iteration i updates when (i * upd_pct) % 100 < upd_pct.
		std::vector<bpf_insn> upd, look;
		map_call(upd, true);
		map_call(look, false);
		call.push_back(insn(BPF_ALU64 | BPF_MOV | BPF_X, 7, 6, 0, 0));
		call.push_back(
			insn(BPF_ALU64 | BPF_MUL | BPF_K, 7, 0, 0, static_cast<int32_t>(upd_pct)));
		call.push_back(insn(BPF_ALU64 | BPF_MOD | BPF_K, 7, 0, 0, 100));
		call.push_back(insn(BPF_JMP | BPF_JGE | BPF_K, 7, 0,
				    static_cast<int16_t>(upd.size() + 1),
				    static_cast<int32_t>(upd_pct)));
		call.insert(call.end(), upd.begin(), upd.end());
		call.push_back(insn(BPF_JMP | BPF_JA, 0, 0, static_cast<int16_t>(look.size()), 0));
		call.insert(call.end(), look.begin(), look.end());
	}
	p.push_back(insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, static_cast<int16_t>(call.size()), 0));
	p.insert(p.end(), call.begin(), call.end());
	p.push_back(insn(BPF_ALU64 | BPF_ADD | BPF_K, 6, 0, 0, 1));
	int back = -static_cast<int>(p.size()); // to the prandom call
	p.push_back(insn(BPF_JMP | BPF_JLT | BPF_K, 6, 0, static_cast<int16_t>(back), loop));
	p.push_back(insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0));
	p.push_back(insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
	// A socket filter, not XDP: each BPF_PROG_TEST_RUN of an XDP program installs it in
	// the XDP dispatcher and takes it out again, which costs milliseconds of waiting
	// whenever no other XDP program is running, and would hide the loop's own time.
	return load_prog(p, why, BPF_PROG_TYPE_SOCKET_FILTER);
}

// Run prog repeat times on a 64-byte packet: the kernel's average ns per run, or -1.
inline double run_ns(int prog, uint32_t repeat)
{
	unsigned char pkt[64] = {};
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.test.prog_fd = static_cast<uint32_t>(prog);
	a.test.data_in = reinterpret_cast<uintptr_t>(pkt);
	a.test.data_size_in = sizeof(pkt);
	a.test.repeat = repeat;
	if (kernel_bpf(BPF_PROG_TEST_RUN, &a) != 0)
		return -1;
	return static_cast<double>(a.test.duration);
}

} // namespace kernel_prog
