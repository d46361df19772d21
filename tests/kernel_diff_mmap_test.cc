// Kernel-differential tests of MAP_FREEZE, mmap() of map fds (what a mapping may become and
// how long it keeps a freeze away) and read-only and write-only fds.
#include "kernel_diff.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace kernel_diff {
namespace {

// ==== freeze and fd access modes ===============================================================

TEST_F(KernelDiff, Freeze)
{
	for (uint32_t type : {T_HASH, T_ARRAY}) {
		std::string t = type == T_HASH ? "HASH " : "ARRAY ";
		Pair p = type == T_HASH ? hash_pair(t) : array_pair(t);
		ASSERT_TRUE(p);
		fill(p, 1, 7);
		fill(p, 2, 8);
		const std::vector<uint8_t> k1 = u32key(1), k5 = u32key(5), k99 = u32key(99),
					   val(8, 0x33);
		EA fz;
		elem(t + "FREEZE", p, C_FREEZE, fz);
		elem(t + "FREEZE twice", p, C_FREEZE, fz);
		for (const auto *key : {&k1, &k5, &k99}) {
			std::string kn = " key " + std::to_string((*key)[0]);
			for (uint64_t flags :
			     {U_ANY, U_NOEXIST, U_EXIST, uint64_t{3}, uint64_t{7}}) {
				EA a;
				a.key = key;
				a.val = &val;
				a.flags = flags;
				elem(t + "frozen UPDATE flags " + std::to_string(flags) + kn, p,
				     C_UPDATE, a);
			}
			EA a;
			a.key = key;
			elem(t + "frozen DELETE" + kn, p, C_DELETE, a);
			elem(t + "frozen LOOKUP_AND_DELETE" + kn, p, C_LOOKUP_AND_DELETE, a);
			elem(t + "frozen LOOKUP" + kn, p, C_LOOKUP, a);
			a.flags = 1;
			elem(t + "frozen LOOKUP_AND_DELETE flags 1" + kn, p, C_LOOKUP_AND_DELETE,
			     a);
		}
		EA nk;
		nk.keyp = Ptr::NUL;
		nk.val = &val;
		elem(t + "frozen UPDATE key NULL", p, C_UPDATE, nk);
		elem(t + "frozen DELETE key NULL", p, C_DELETE, nk);
		elem(t + "frozen LOOKUP_AND_DELETE key NULL", p, C_LOOKUP_AND_DELETE, nk);
		if (type == T_ARRAY)
			elem(t + "frozen GET_NEXT_KEY key NULL", p, C_GET_NEXT_KEY, nk);
		info_check(t + "frozen info", p);
	}
	// FREEZE with a non-zero byte after map_fd, then for real.
	Pair p = hash_pair("freeze tail");
	ASSERT_TRUE(p);
	EA a;
	a.poke = {{4, 1}};
	elem("FREEZE byte 4", p, C_FREEZE, a);
	elem("FREEZE after a rejected one", p, C_FREEZE, EA{});
}

TEST_F(KernelDiff, FreezeWithWritableMmap)
{
	Pair p = array_pair("mmapable", 8, 16, F_MMAPABLE);
	ASSERT_TRUE(p);
	void *km = mmap(nullptr, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, p.k, 0);
	void *um = mmap(nullptr, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, p.u, 0);
	ASSERT_NE(km, MAP_FAILED) << errname(errno);
	ASSERT_NE(um, MAP_FAILED) << errname(errno);
	elem("FREEZE with a writable mapping alive", p, C_FREEZE, EA{});
	munmap(km, PAGE);
	munmap(um, PAGE);
	p = array_pair("mmapable 2", 8, 16, F_MMAPABLE); // a fresh map, in case the first froze
	ASSERT_TRUE(p);
	km = mmap(nullptr, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, p.k, 0);
	um = mmap(nullptr, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, p.u, 0);
	ASSERT_NE(km, MAP_FAILED) << errname(errno);
	ASSERT_NE(um, MAP_FAILED) << errname(errno);
	munmap(km, PAGE);
	munmap(um, PAGE);
	elem("FREEZE after munmap", p, C_FREEZE, EA{});
	// A read-only mapping does not stop a freeze.
	Pair r = array_pair("mmapable 3", 8, 16, F_MMAPABLE);
	ASSERT_TRUE(r);
	km = mmap(nullptr, PAGE, PROT_READ, MAP_SHARED, r.k, 0);
	um = mmap(nullptr, PAGE, PROT_READ, MAP_SHARED, r.u, 0);
	ASSERT_NE(km, MAP_FAILED) << errname(errno);
	ASSERT_NE(um, MAP_FAILED) << errname(errno);
	elem("FREEZE with a read-only mapping alive", r, C_FREEZE, EA{});
	munmap(km, PAGE);
	munmap(um, PAGE);
	// After the freeze: a writable mapping is refused, a read-only one is fine.
	errno = 0;
	km = mmap(nullptr, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, p.k, 0);
	int kerr = km == MAP_FAILED ? errno : 0;
	errno = 0;
	um = mmap(nullptr, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, p.u, 0);
	int uerr = um == MAP_FAILED ? errno : 0;
	if (kerr != uerr)
		MISMATCH("mmap(PROT_WRITE, MAP_SHARED) of a frozen MMAPABLE array",
			 "kernel " << errname(kerr) << ", bpfmap " << errname(uerr));
	if (km != MAP_FAILED)
		munmap(km, PAGE);
	if (um != MAP_FAILED)
		munmap(um, PAGE);
}

// What a mapping may become after mmap(), and how long it keeps a freeze away: mprotect()
// of a read-only mapping to writable or of any mapping to executable, mremap() growing or
// with MREMAP_DONTUNMAP, a partial munmap(), a mapping moved or mapped over, the map fd
// closed while mapped, and the same on both sides in one sequence.
TEST_F(KernelDiff, MmapLifetime)
{
	Pair p = array_pair("mmap lifetime", 8, 1000, F_MMAPABLE);
	ASSERT_TRUE(p);
	struct Side {
		int fd;
		char *ro = nullptr, *rw = nullptr;
	} side[2] = {{p.k}, {p.u}};
	auto both = [&](const std::string &what, auto &&op) {
		int err[2];
		for (int i = 0; i < 2; i++) {
			errno = 0;
			err[i] = op(side[i]) ? errno : 0;
		}
		if (err[0] != err[1])
			MISMATCH("mmap lifetime: " + what,
				 "kernel " << errname(err[0]) << ", bpfmap " << errname(err[1]));
	};
	for (Side &s : side) {
		s.ro = static_cast<char *>(mmap(nullptr, PAGE, PROT_READ, MAP_SHARED, s.fd, 0));
		s.rw = static_cast<char *>(
			mmap(nullptr, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, s.fd, 0));
		ASSERT_NE(s.ro, MAP_FAILED);
		ASSERT_NE(s.rw, MAP_FAILED);
	}
	both("mprotect read-only to rw",
	     [](Side &s) { return mprotect(s.ro, PAGE, PROT_READ | PROT_WRITE) != 0; });
	both("mprotect read-only to rx",
	     [](Side &s) { return mprotect(s.ro, PAGE, PROT_READ | PROT_EXEC) != 0; });
	both("mprotect rw to r", [](Side &s) { return mprotect(s.rw, 2 * PAGE, PROT_READ) != 0; });
	elem("FREEZE, writable mapping made read-only", p, C_FREEZE, EA{});
	both("mprotect r back to rw",
	     [](Side &s) { return mprotect(s.rw, 2 * PAGE, PROT_READ | PROT_WRITE) != 0; });
	both("mremap grow", [](Side &s) {
		return mremap(s.rw, 2 * PAGE, 3 * PAGE, MREMAP_MAYMOVE) == MAP_FAILED;
	});
	both("mremap DONTUNMAP", [](Side &s) {
		return mremap(s.rw, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP) == MAP_FAILED;
	});
	both("mremap shrink",
	     [](Side &s) { return mremap(s.rw, 2 * PAGE, PAGE, 0) == MAP_FAILED; });
	elem("FREEZE, one writable page left", p, C_FREEZE, EA{});
	both("mremap onto the read-only mapping", [](Side &s) {
		void *m = mremap(s.rw, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, s.ro);
		if (m == MAP_FAILED)
			return true;
		s.rw = static_cast<char *>(m);
		s.ro = nullptr;
		return false;
	});
	elem("FREEZE, writable mapping moved", p, C_FREEZE, EA{});
	// The moved mapping still reaches the map: a write through it is seen by a lookup.
	for (Side &s : side)
		memset(s.rw + 8, 0x5a, 8);
	EA look;
	std::vector<uint8_t> k1 = u32key(1);
	look.key = &k1;
	elem("LOOKUP through the moved mapping", p, C_LOOKUP, look);
	both("anonymous MAP_FIXED over the writable mapping", [](Side &s) {
		return mmap(s.rw, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
			    0) == MAP_FAILED;
	});
	elem("FREEZE, writable mapping mapped over", p, C_FREEZE, EA{});
	for (Side &s : side)
		munmap(s.rw, PAGE);

	// A partial munmap() leaves the rest counted; closing the fd does not end a mapping.
	Pair q = array_pair("mmap partial", 8, 1000, F_MMAPABLE);
	ASSERT_TRUE(q);
	char *m[2];
	int fd2[2] = {dup(q.k), dup(q.u)};
	for (int i = 0; i < 2; i++) {
		m[i] = static_cast<char *>(
			mmap(nullptr, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd2[i], 0));
		ASSERT_NE(m[i], MAP_FAILED);
		munmap(m[i], PAGE);
		close(fd2[i]);
	}
	elem("FREEZE, half a writable mapping left, its fd closed", q, C_FREEZE, EA{});
	for (int i = 0; i < 2; i++)
		munmap(m[i] + PAGE, PAGE);
	elem("FREEZE, all unmapped", q, C_FREEZE, EA{});
	// An fd this process never used for a bpf command gets the checks too.
	for (int i = 0; i < 2; i++) {
		fd2[i] = dup(i ? q.u : q.k);
		ASSERT_GE(fd2[i], 0);
	}
	both("mmap rw of a frozen map through a fresh dup", [&](Side &s) {
		int fd = fd2[&s - side];
		void *w = mmap(nullptr, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (w == MAP_FAILED)
			return true;
		munmap(w, PAGE);
		return false;
	});
	for (int fd : fd2)
		close(fd);
}

// Writable mappings in other processes: one inherited over fork(), which lasts until both
// processes unmapped it, and one a child made itself, which goes when the child is killed.
TEST_F(KernelDiff, MmapOtherProcess)
{
	for (bool inherited : {true, false}) {
		std::string t = inherited ? "inherited mapping: " : "child's own mapping: ";
		Pair p = array_pair(t + "create", 8, 1000, F_MMAPABLE);
		ASSERT_TRUE(p);
		void *m[2] = {MAP_FAILED, MAP_FAILED};
		if (inherited)
			for (int i = 0; i < 2; i++) {
				m[i] = mmap(nullptr, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED,
					    i ? p.u : p.k, 0);
				ASSERT_NE(m[i], MAP_FAILED);
			}
		int ready[2], hold[2];
		ASSERT_EQ(pipe(ready), 0);
		ASSERT_EQ(pipe(hold), 0);
		pid_t pid = fork();
		ASSERT_GE(pid, 0);
		if (pid == 0) {
			close(ready[0]);
			close(hold[1]);
			bool ok = true;
			if (!inherited)
				for (int fd : {p.k, p.u})
					ok &= mmap(nullptr, PAGE, PROT_READ | PROT_WRITE,
						   MAP_SHARED, fd, 0) != MAP_FAILED;
			char c = ok ? 'y' : 'n';
			(void)!write(ready[1], &c, 1);
			(void)!read(hold[0], &c, 1); // until the parent kills us
			_exit(0);
		}
		close(ready[1]);
		close(hold[0]);
		char c = 0;
		ASSERT_EQ(read(ready[0], &c, 1), 1);
		EXPECT_EQ(c, 'y');
		if (inherited)
			for (int i = 0; i < 2; i++)
				munmap(m[i], PAGE);
		elem(t + "FREEZE while the child is alive", p, C_FREEZE, EA{});
		kill(pid, SIGKILL);
		waitpid(pid, nullptr, 0);
		close(ready[0]);
		close(hold[1]);
		elem(t + "FREEZE after the child was killed", p, C_FREEZE, EA{});
	}
}

// mmap() of a map fd: which types may be mapped, shared only, not past the values, not
// writable once frozen or for a BPF_F_RDONLY_PROG map, and the fd's open mode first.
TEST_F(KernelDiff, MmapChecks)
{
	struct Kind {
		const char *name;
		uint32_t type, flags;
	};
	const Kind kinds[] = {
		{"HASH", T_HASH, 0},
		{"ARRAY", T_ARRAY, 0},
		{"ARRAY MMAPABLE", T_ARRAY, F_MMAPABLE},
		{"ARRAY MMAPABLE RDONLY_PROG", T_ARRAY, F_MMAPABLE | F_RDONLY_PROG},
		{"ARRAY MMAPABLE RDONLY fd", T_ARRAY, F_MMAPABLE | F_RDONLY},
		{"ARRAY MMAPABLE WRONLY fd", T_ARRAY, F_MMAPABLE | F_WRONLY},
		{"PERCPU_HASH", T_PERCPU_HASH, 0},
		{"PERCPU_ARRAY", T_PERCPU_ARRAY, 0},
	};
	struct Shape {
		const char *name;
		size_t len;
		int prot, flags;
		off_t off;
	};
	// 1000 values of 8 bytes: two pages of values.
	const Shape shapes[] = {
		{"r shared", PAGE, PROT_READ, MAP_SHARED, 0},
		{"rw shared", PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0},
		{"rw shared, both pages", 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 0},
		{"r shared, second page", PAGE, PROT_READ, MAP_SHARED, PAGE},
		{"r shared, three pages", 3 * PAGE, PROT_READ, MAP_SHARED, 0},
		{"r shared, third page", PAGE, PROT_READ, MAP_SHARED, 2 * PAGE},
		{"r private", PAGE, PROT_READ, MAP_PRIVATE, 0},
		{"rw private", PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, 0},
		{"w shared", PAGE, PROT_WRITE, MAP_SHARED, 0},
		{"r shared, offset 1", PAGE, PROT_READ, MAP_SHARED, 1},
		{"r shared, length 0", 0, PROT_READ, MAP_SHARED, 0},
		{"rx shared", PAGE, PROT_READ | PROT_EXEC, MAP_SHARED, 0},
		{"rwx shared", PAGE, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_SHARED, 0},
		{"rx private", PAGE, PROT_READ | PROT_EXEC, MAP_PRIVATE, 0},
	};
	for (const Kind &k : kinds) {
		for (bool frozen : {false, true}) {
			std::string t = std::string(k.name) + (frozen ? " frozen " : " ");
			Pair p = create_both(t + "create", create_req(k.type, 4, 8, 1000, k.flags));
			ASSERT_TRUE(p);
			if (frozen)
				elem(t + "FREEZE", p, C_FREEZE, EA{});
			for (const Shape &sh : shapes) {
				int err[2];
				for (int side = 0; side < 2; side++) {
					errno = 0;
					void *m = mmap(nullptr, sh.len, sh.prot, sh.flags,
						       side ? p.u : p.k, sh.off);
					err[side] = m == MAP_FAILED ? errno : 0;
					if (m != MAP_FAILED)
						munmap(m, sh.len);
				}
				if (err[0] != err[1])
					MISMATCH("mmap " + t + sh.name,
						 "kernel " << errname(err[0]) << ", bpfmap "
							   << errname(err[1]));
			}
		}
	}
}

TEST_F(KernelDiff, ReadOnlyAndWriteOnlyFds)
{
	for (uint32_t type : {T_HASH, T_ARRAY}) {
		for (uint32_t acc : {F_RDONLY, F_WRONLY}) {
			std::string t = std::string(type == T_HASH ? "HASH " : "ARRAY ") +
					(acc == F_RDONLY ? "RDONLY " : "WRONLY ");
			Pair p = create_both(t, create_req(type, 4, 8, 4, acc));
			ASSERT_TRUE(p);
			const std::vector<uint8_t> k0 = u32key(0), k1 = u32key(1), val(8, 0x44);
			EA a;
			a.key = &k1;
			a.val = &val;
			elem(t + "UPDATE", p, C_UPDATE, a);
			elem(t + "LOOKUP", p, C_LOOKUP, a);
			elem(t + "GET_NEXT_KEY", p, C_GET_NEXT_KEY, a);
			EA n;
			n.keyp = Ptr::NUL;
			elem(t + "GET_NEXT_KEY key NULL", p, C_GET_NEXT_KEY, n);
			elem(t + "LOOKUP_AND_DELETE", p, C_LOOKUP_AND_DELETE, a);
			elem(t + "DELETE", p, C_DELETE, a);
			elem(t + "FREEZE", p, C_FREEZE, EA{});
			info_check(t + "info", p);
		}
	}
}

} // namespace
} // namespace kernel_diff
