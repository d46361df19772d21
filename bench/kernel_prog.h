// Small XDP programs for measuring the kernel's own in-program costs: build the bytecode,
// load it, run it with BPF_PROG_TEST_RUN. Shared by map_bench and ringbuf_bench.
#pragma once

#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

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

// Load p as an XDP program: its fd, or -1 with the verifier's reason (its last lines) in *why.
inline int load_xdp(const std::vector<bpf_insn> &p, std::string *why)
{
	static char log[65536];
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.prog_type = BPF_PROG_TYPE_XDP;
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

// What a probe loop does with each probe it picks.
enum class probe_op { none, lookup, update };

// An XDP program that `loop` times picks a random probe (bpf_get_prandom_u32() & mask) from
// the array map probes_fd and looks it up in the map target_fd (lookup), or stores it there
// as key and value with BPF_ANY (update: the probe holds the key and at least value_size
// bytes); probe_op::none only picks. Run with and without the map call, the difference
// per iteration is what the kernel's own helper costs, net of the loop and the pick.
inline int load_probe_loop(int probes_fd, uint32_t mask, int target_fd, probe_op op, int loop,
			   std::string *why)
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
	std::vector<bpf_insn> call;
	if (op != probe_op::none) {
		call.push_back(insn(BPF_ALU64 | BPF_MOV | BPF_X, 2, 0, 0, 0)); // key = probe
		if (op == probe_op::update) {
			call.push_back(insn(BPF_ALU64 | BPF_MOV | BPF_X, 3, 0, 0, 0)); // value too
			call.push_back(insn(BPF_ALU64 | BPF_MOV | BPF_K, 4, 0, 0, BPF_ANY));
		}
		load_map(call, 1, target_fd);
		call.push_back(insn(BPF_JMP | BPF_CALL, 0, 0, 0,
				    op == probe_op::update ? BPF_FUNC_map_update_elem
							   : BPF_FUNC_map_lookup_elem));
	}
	p.push_back(insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, static_cast<int16_t>(call.size()), 0));
	p.insert(p.end(), call.begin(), call.end());
	p.push_back(insn(BPF_ALU64 | BPF_ADD | BPF_K, 6, 0, 0, 1));
	int back = -static_cast<int>(p.size()); // to the prandom call
	p.push_back(insn(BPF_JMP | BPF_JLT | BPF_K, 6, 0, static_cast<int16_t>(back), loop));
	p.push_back(insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, XDP_PASS));
	p.push_back(insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
	return load_xdp(p, why);
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
