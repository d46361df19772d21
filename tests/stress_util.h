// What the stress tests (stress_test.cc, stress_lru_test.cc, stress_lpm_test.cc, one binary)
// share: counting a map's keys, and writer processes killed at random points.
#pragma once

#include <atomic>
#include <csignal>
#include <set>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "test_util.h"

namespace bpfmap::test {

// The distinct keys a get_next_key walk of fd meets.
inline size_t count_keys(int fd)
{
	std::set<uint32_t> seen;
	uint32_t k, n;
	const void *cur = nullptr;
	while (next_key(fd, cur, &n) == 0) {
		seen.insert(n);
		k = n;
		cur = &k;
	}
	return seen.size();
}

// Ten writer processes in turn, each SIGKILLed after 20 ms or more of writing, wherever it
// happens to be. write(round, bad) never returns; it counts the answers it did not expect
// in *bad, which all the writers share. Returns that count.
template <typename F> long kill_writers_mid_stream(F &&write)
{
	void *page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	auto *bad = new (page) std::atomic<long>(0);
	for (int round = 0; round < 10; round++) {
		pid_t pid = fork();
		if (pid == 0) {
			write(round, bad);
			_exit(0);
		}
		usleep(20000 + round * 3000);
		kill(pid, SIGKILL);
		waitpid(pid, nullptr, 0);
	}
	long n = bad->load();
	munmap(page, 4096);
	return n;
}

} // namespace bpfmap::test
