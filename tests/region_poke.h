// Corrupting a live map on purpose: the tests of the families that treat their region as
// untrusted write chosen bad words into it and check that every command still returns.
//
// A map's file holds the type's data area from offset 0, then one header page whose
// control block starts MAP_CTL_OFFSET bytes in (core/map.h). Words are written with
// pwrite() on the map's own fd, a second way into the file that no check of the library
// sees, as another process sharing the map would. Commands on the damaged map run in a
// forked child with an alarm set, so that a crash or a hang fails the test instead of
// ending or stalling the test binary.
#pragma once

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/map.h"
#include "test_util.h"

namespace bpfmap::test {

inline constexpr off_t REGION_HEADER_PAGE = static_cast<off_t>(MAP_HEADER_SIZE);
inline constexpr off_t REGION_CTL_OFFSET = static_cast<off_t>(MAP_CTL_OFFSET);

inline off_t region_file_size(int fd)
{
	struct stat st {};
	return fstat(fd, &st) == 0 ? st.st_size : 0;
}

// File offset of byte off of the family's control block.
inline off_t ctl_offset(int fd, off_t off)
{
	return region_file_size(fd) - REGION_HEADER_PAGE + REGION_CTL_OFFSET + off;
}

template <typename T> void poke(int fd, off_t off, T v)
{
	ASSERT_EQ(pwrite(fd, &v, sizeof(v), off), static_cast<ssize_t>(sizeof(v)));
}

template <typename T> T peek(int fd, off_t off)
{
	T v{};
	EXPECT_EQ(pread(fd, &v, sizeof(v), off), static_cast<ssize_t>(sizeof(v)));
	return v;
}

// Runs fn() in a forked child that has `seconds` to finish. fn returns how many of its own
// checks failed (it prints them); the child dying of a signal (SIGALRM: it hung) or
// failing a check fails the caller.
template <typename F>::testing::AssertionResult in_child(F &&fn, unsigned seconds = 10)
{
	fflush(nullptr);
	pid_t pid = fork();
	if (pid < 0)
		return ::testing::AssertionFailure() << "fork failed";
	if (pid == 0) {
		alarm(seconds);
		int failed = fn();
		fflush(nullptr);
		_exit(std::min(failed, 100));
	}
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
	}
	if (WIFSIGNALED(st))
		return ::testing::AssertionFailure()
		       << "the child was killed by signal " << WTERMSIG(st)
		       << (WTERMSIG(st) == SIGALRM ? " (it hung)" : "");
	if (WEXITSTATUS(st))
		return ::testing::AssertionFailure()
		       << WEXITSTATUS(st) << " check(s) failed in the child";
	return ::testing::AssertionSuccess();
}

// In a child: 0 when got is one of the results allowed, else 1 and a line saying so.
inline int expect_one_of(long got, std::initializer_list<long> allowed, const char *what)
{
	if (std::find(allowed.begin(), allowed.end(), got) != allowed.end())
		return 0;
	fprintf(stderr, "%s: got %ld\n", what, got);
	return 1;
}

// MAP_LOOKUP_BATCH of up to count elements from the first; its result (0 or -errno).
inline long lookup_batch(int fd, uint32_t key_size, uint32_t value_size, uint32_t count)
{
	std::vector<char> keys(static_cast<size_t>(key_size) * count);
	std::vector<char> values(static_cast<size_t>(value_size) * count);
	std::vector<char> out(key_size);
	u::bpf_attr a{};
	a.batch.out_batch = ptr(out.data());
	a.batch.keys = ptr(keys.data());
	a.batch.values = ptr(values.data());
	a.batch.count = count;
	a.batch.map_fd = static_cast<uint32_t>(fd);
	return sys(u::MAP_LOOKUP_BATCH, a);
}

// A copy of map fd's file, changed by edit(bytes, ctl) where ctl is the control block's
// offset in bytes, pinned as `name` in the test's pin root and opened with OBJ_GET: what
// a process that finds a region in that state gets. The copy's id is made one no map has,
// so that letting go of it touches no other map's id. Returns the fd or -errno.
template <typename F> long open_forged_copy(int fd, const char *name, F &&edit)
{
	off_t size = region_file_size(fd);
	std::vector<char> bytes(static_cast<size_t>(size));
	if (pread(fd, bytes.data(), bytes.size(), 0) != size)
		return -EIO;
	off_t hdr = size - REGION_HEADER_PAGE;
	uint32_t fake_id = 0x7ffffff0u;
	memcpy(bytes.data() + hdr + offsetof(map_header, id), &fake_id, sizeof(fake_id));
	edit(bytes, static_cast<size_t>(hdr + REGION_CTL_OFFSET));
	std::string file = std::string(getenv("BPFMAP_PIN_ROOT")) + "/" + name;
	unlink(file.c_str());
	int out = open(file.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0)
		return -errno;
	bool ok = pwrite(out, bytes.data(), bytes.size(), 0) == size;
	close(out);
	if (!ok)
		return -EIO;
	std::string pin = std::string("/sys/fs/bpf/") + name;
	u::bpf_attr a{};
	a.obj.pathname = ptr(pin.c_str());
	long r = sys(u::OBJ_GET, a);
	unlink(file.c_str());
	return r;
}

} // namespace bpfmap::test
