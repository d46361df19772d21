// CPU helpers shared by the tests, using only the C library (kernel_diff_test links nothing
// of bpfmap's internals): the possible CPUs as sysfs lists them, read independently of
// bpfmap's own reading, and running code on a chosen CPU.
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sched.h>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace cpu_util {

// The value slot of each CPU number (-1: not possible), from
// /sys/devices/system/cpu/possible ("0-3,8,10-11"), in CPU order as libbpf counts them.
inline const std::vector<int> &possible_slots()
{
	static const std::vector<int> v = [] {
		std::vector<int> v;
		std::ifstream f("/sys/devices/system/cpu/possible");
		std::string list, part;
		std::getline(f, list);
		std::stringstream ss(list);
		int n = 0;
		while (std::getline(ss, part, ',')) {
			unsigned lo = 0, hi = 0;
			int got = sscanf(part.c_str(), "%u-%u", &lo, &hi);
			if (got == 1)
				hi = lo;
			if (got < 1)
				continue;
			if (v.size() <= hi)
				v.resize(hi + 1, -1);
			for (unsigned c = lo; c <= hi; c++)
				v[c] = n++;
		}
		if (v.empty())
			v.push_back(0); // unreadable: one CPU, as bpfmap assumes
		return v;
	}();
	return v;
}

inline int cpu_slot(uint32_t cpu)
{
	return cpu < possible_slots().size() ? possible_slots()[cpu] : -1;
}

inline uint32_t nr_cpu_ids() { return static_cast<uint32_t>(possible_slots().size()); }

inline uint32_t possible_cpus()
{
	uint32_t n = 0;
	for (int s : possible_slots())
		n += s >= 0;
	return n;
}

// Run fn on a thread pinned to CPU number cpu; false if this process may not run there.
template <typename F> bool run_on_cpu(uint32_t cpu, F &&fn)
{
	bool ran = false;
	std::thread t([&] {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set) != 0)
			return;
		fn();
		ran = true;
	});
	t.join();
	return ran;
}

// The calling thread moved to one CPU (move() to another) for the scope's life, then given
// back the CPUs it had.
struct PinCpu {
	cpu_set_t old;
	explicit PinCpu(int cpu)
	{
		sched_getaffinity(0, sizeof(old), &old);
		move(cpu);
	}
	void move(int cpu)
	{
		cpu_set_t s;
		CPU_ZERO(&s);
		CPU_SET(cpu, &s);
		sched_setaffinity(0, sizeof(s), &s);
	}
	~PinCpu() { sched_setaffinity(0, sizeof(old), &old); }
};

} // namespace cpu_util
