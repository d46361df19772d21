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
