// The CPUs a per-CPU map keeps a value for, and which of them the caller runs on.
//
// As in the kernel, a per-CPU value has one slot for each possible CPU (the CPUs that
// /sys/devices/system/cpu/possible lists), in CPU order; syscall commands copy all slots,
// round_up(value_size, 8) bytes each. A map records the slot count when it is created, so
// every process that opens it agrees on the layout.
#pragma once

#include <cstdint>

namespace bpfmap {

// The percpu allocator's unit: the kernel refuses per-CPU values that round up past it.
inline constexpr uint32_t PCPU_MIN_UNIT_SIZE = 32768;

// How many CPUs are possible (the kernel's num_possible_cpus()).
uint32_t num_possible_cpus();
// The slot of CPU number cpu, or -1 when that CPU is not possible.
int cpu_slot(uint32_t cpu);
// The slot of the CPU the calling thread runs on now. The thread may be moved to another
// CPU right after; callers lock the slot they write (see the per-CPU families).
uint32_t this_cpu_slot();
// The same, for a map with nr_slots value slots: a map opened by a process that counts more
// CPUs than its creator did (it cannot happen on one machine) still stays inside its values.
inline uint32_t this_cpu_slot(uint32_t nr_slots)
{
	uint32_t slot = this_cpu_slot();
	return slot < nr_slots ? slot : slot % nr_slots;
}

} // namespace bpfmap
