#include "core/percpu.h"

#include <cstdio>
#include <sched.h>
#include <vector>

namespace bpfmap {
namespace {

struct cpu_table {
	std::vector<int> slot_of; // by CPU number; -1 for CPUs that are not possible
	uint32_t n_possible = 0;
};

// Parse a CPU list such as "0-3,8,10-11". An unreadable or malformed file means one CPU,
// the least any machine has.
std::vector<bool> read_possible()
{
	std::vector<bool> possible;
	if (FILE *f = fopen("/sys/devices/system/cpu/possible", "re")) {
		unsigned lo, hi;
		int c;
		while (fscanf(f, "%u", &lo) == 1) {
			hi = lo;
			c = fgetc(f);
			if (c == '-') {
				if (fscanf(f, "%u", &hi) != 1)
					break;
				c = fgetc(f);
			}
			if (hi < lo || hi >= 1u << 16)
				break;
			if (possible.size() <= hi)
				possible.resize(hi + 1, false);
			for (unsigned cpu = lo; cpu <= hi; cpu++)
				possible[cpu] = true;
			if (c != ',')
				break;
		}
		fclose(f);
	}
	if (possible.empty())
		possible.assign(1, true);
	return possible;
}

const cpu_table &cpus()
{
	static const cpu_table t = [] {
		cpu_table t;
		std::vector<bool> possible = read_possible();
		t.slot_of.assign(possible.size(), -1);
		for (size_t cpu = 0; cpu < possible.size(); cpu++)
			if (possible[cpu])
				t.slot_of[cpu] = static_cast<int>(t.n_possible++);
		return t;
	}();
	return t;
}

} // namespace

uint32_t num_possible_cpus() { return cpus().n_possible; }

int cpu_slot(uint32_t cpu)
{
	const cpu_table &t = cpus();
	return cpu < t.slot_of.size() ? t.slot_of[cpu] : -1;
}

uint32_t this_cpu_slot()
{
	int cpu = sched_getcpu();
	int slot = cpu >= 0 ? cpu_slot(static_cast<uint32_t>(cpu)) : -1;
	return slot >= 0 ? static_cast<uint32_t>(slot) : 0;
}

} // namespace bpfmap
