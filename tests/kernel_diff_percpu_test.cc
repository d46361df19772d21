// Kernel-differential tests of per-CPU maps from the program side: a kernel BPF program
// and bpfmap's program-side ABI make the same update from the same CPU.
#include "kernel_diff.h"

#include <cerrno>
#include <sched.h>
#include <string>
#include <vector>

namespace kernel_diff {
namespace {

// ==== per-CPU program side ================================================================
//
// A BPF program on the kernel side, the program-side ABI on bpfmap's: the same update made
// from the same CPU must leave the same bytes, as the syscall lookup shows them.

// A socket filter that runs bpf_map_update_elem(map, &key, &value, 0) and returns 0.
std::vector<insn> update_prog(int map_fd, uint32_t key, uint64_t value)
{
	const uint8_t R0 = 0, R1 = 1, R2 = 2, R3 = 3, R4 = 4, FP = 10;
	auto regs = [](uint8_t dst, uint8_t src) { return static_cast<uint8_t>(dst | src << 4); };
	return {
		{0x62, regs(FP, 0), -8, static_cast<int32_t>(key)},    // *(u32 *)(fp - 8) = key
		{0x62, regs(FP, 0), -4, 0},			       // *(u32 *)(fp - 4) = 0
		{0x62, regs(FP, 0), -16, static_cast<int32_t>(value)}, // value, low half
		{0x62, regs(FP, 0), -12, static_cast<int32_t>(value >> 32)}, // value, high half
		{0x18, regs(R1, 1), 0, map_fd},
		{0, 0, 0, 0}, // r1 = map (pseudo fd)
		{0xbf, regs(R2, FP), 0, 0},
		{0x07, regs(R2, 0), 0, -8}, // r2 = fp - 8
		{0xbf, regs(R3, FP), 0, 0},
		{0x07, regs(R3, 0), 0, -16}, // r3 = fp - 16
		{0xb7, regs(R4, 0), 0, 0},   // r4 = 0
		{0x85, 0, 0, 2},	     // bpf_map_update_elem
		{0xb7, regs(R0, 0), 0, 0},   // r0 = 0
		{0x95, 0, 0, 0},	     // exit
	};
}

int kernel_prog_update(int map_fd, uint32_t key, uint64_t value)
{
	return kernel_prog_run(update_prog(map_fd, key, value));
}

TEST_F(KernelDiff, PercpuProgramUpdatesMatchKernelPrograms)
{
	cpu_set_t allowed;
	ASSERT_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
	for (uint32_t type : {T_PERCPU_HASH, T_PERCPU_ARRAY}) {
		for (uint32_t vs : {8u, 4u}) {
			std::string t =
				std::string(map_type_name(type)) + " v" + std::to_string(vs) + " ";
			Pair p = create_both(t + "create", create_req(type, 4, vs, 4));
			ASSERT_TRUE(p);
			bpfmap_map *m = bpfmap_map_get(p.u);
			ASSERT_NE(m, nullptr);
			// Junk in every CPU's value, padding included. For the hash, the element is
			// then freed, from the CPU that runs the first program, whose update takes
			// it back on both sides (the kernel's free lists are per CPU; bpfmap's is
			// last-in first-out): its padding shows what a new key inherits.
			std::vector<uint32_t> cpus;
			for (uint32_t cpu = 0; cpu < CPU_SETSIZE; cpu++)
				if (CPU_ISSET(cpu, &allowed))
					cpus.push_back(cpu);
			std::vector<uint8_t> junk(p.vb(), 0xff), k1 = u32key(1), k2 = u32key(2);
			ASSERT_TRUE(cpu_util::run_on_cpu(cpus[0], [&] {
				EA a;
				a.key = &k1;
				a.val = &junk;
				check(t + "junk", elem_req(p, C_UPDATE, a));
				if (is_hash(type)) {
					EA d;
					d.key = &k1;
					check(t + "delete", elem_req(p, C_DELETE, d));
				}
			}));
			int ran = 0;
			for (uint32_t cpu : cpus) {
				uint64_t value = 0x1111222233330000ull + cpu;
				int kerr = -1;
				long uerr = -1;
				ASSERT_TRUE(cpu_util::run_on_cpu(cpu, [&] {
					kerr = kernel_prog_update(p.k, 1, value);
					uerr = bpfmap_map_update_elem(m, k1.data(), &value, 0);
				}));
				if (kerr) {
					bpfmap_map_put(m);
					GTEST_SKIP() << "cannot run a BPF program here: "
						     << errname(kerr);
				}
				EXPECT_EQ(uerr, 0);
				EA l;
				l.key = &k1;
				check(t + "after a program update on CPU " + std::to_string(cpu),
				      elem_req(p, C_LOOKUP, l));
				if (ran++ == 0) { // a second key, created on this CPU only
					ASSERT_TRUE(cpu_util::run_on_cpu(cpu, [&] {
						kernel_prog_update(p.k, 2, value);
						bpfmap_map_update_elem(m, k2.data(), &value, 0);
					}));
					EA l2;
					l2.key = &k2;
					check(t + "new key from a program on CPU " +
						      std::to_string(cpu),
					      elem_req(p, C_LOOKUP, l2));
				}
			}
			bpfmap_map_put(m);
		}
	}
}

} // namespace
} // namespace kernel_diff
