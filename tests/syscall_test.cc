// The generic layer: attr sizes, fds, pins, info, and sharing across fork and exec.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <csignal>
#include <fcntl.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "core/uaccess.h"
#include "test_util.h"

using namespace bpfmap::test;

extern char **environ;

namespace {

TEST(Attr, SizeAndTailRules)
{
	unsigned char buf[4200] = {};
	auto &a = *reinterpret_cast<u::bpf_attr *>(buf);
	a.map_create.map_type = u::MAP_TYPE_HASH;
	a.map_create.key_size = 4;
	a.map_create.value_size = 4;
	a.map_create.max_entries = 4;
	EXPECT_EQ(sys(u::MAP_CREATE, a, 4097), -E2BIG);
	buf[168] = 1;
	EXPECT_EQ(sys(u::MAP_CREATE, a, 200), -E2BIG);
	buf[168] = 0;
	long fd = sys(u::MAP_CREATE, a, 200);
	EXPECT_GE(fd, 0) << "a longer attr with a zero tail is accepted";
	close(static_cast<int>(fd));
	fd = sys(u::MAP_CREATE, a, 16);
	EXPECT_GE(fd, 0) << "a short attr is zero-filled";
	close(static_cast<int>(fd));
	EXPECT_EQ(sys(u::MAP_CREATE, a, 12), -EINVAL) << "max_entries cut off";
	buf[100] = 1;
	EXPECT_EQ(sys(u::MAP_CREATE, a), -EINVAL) << "byte after the command's last field";
	EXPECT_EQ(bpfmap_bpf(9999, nullptr, 0), -1);
	EXPECT_EQ(errno, EINVAL);
	EXPECT_EQ(bpfmap_bpf(u::MAP_CREATE, nullptr, 16), -1);
	EXPECT_EQ(errno, EFAULT);
}

// A size of 0 lets any attr pointer through; the commands that write into the attr then
// fault as the kernel's put_user() does (found by tests/fuzz: it wrote to address 0x14).
TEST(Attr, WriteBackIntoANullAttrFaults)
{
	int fd = map_create(u::MAP_TYPE_HASH, 4, 4, 4);
	ASSERT_GE(fd, 0);
	for (void *attr : {static_cast<void *>(nullptr), reinterpret_cast<void *>(16)}) {
		errno = 0;
		EXPECT_EQ(bpfmap_bpf(u::MAP_GET_NEXT_ID, static_cast<union bpf_attr *>(attr), 0),
			  -1);
		EXPECT_EQ(errno, EFAULT);
	}
	close(fd);
}

TEST(Attr, DeleteAndNextKeyHaveShorterAttrs)
{
	int fd = map_create(u::MAP_TYPE_HASH, 4, 4, 4);
	uint32_t k = 1, v = 1, n;
	ASSERT_EQ(update(fd, &k, &v), 0);
	EXPECT_EQ(elem(u::MAP_DELETE_ELEM, fd, &k, &v), -EINVAL) << "value field set on delete";
	EXPECT_EQ(elem(u::MAP_GET_NEXT_KEY, fd, &k, &n, 1), -EINVAL) << "flags set on next_key";
	close(fd);
}

TEST(Fd, ClosedAndForeignFds)
{
	uint32_t k = 0, v;
	int fd = map_create(u::MAP_TYPE_ARRAY, 4, 4, 1);
	ASSERT_GE(fd, 0);
	int flags = fcntl(fd, F_GETFD);
	EXPECT_TRUE(flags & FD_CLOEXEC) << "map fds are O_CLOEXEC like the kernel's";
	EXPECT_EQ(lookup(fd, &k, &v), 0);
	close(fd);
	EXPECT_EQ(lookup(fd, &k, &v), -EBADF);
	int null = open("/dev/null", O_RDONLY);
	ASSERT_EQ(null, fd) << "the number is reused by an ordinary file";
	EXPECT_EQ(lookup(null, &k, &v), -EINVAL) << "a closed map fd's cache entry is gone";
	u::bpf_attr a{};
	a.info.bpf_fd = 12345;
	EXPECT_EQ(sys(u::OBJ_GET_INFO_BY_FD, a), -EBADFD);
	close(null);
}

TEST(Fd, CloseRangeAndClosefromForgetMapFds)
{
	uint32_t k = 0, v;
	int a = map_create(u::MAP_TYPE_ARRAY, 4, 4, 1);
	int b = map_create(u::MAP_TYPE_ARRAY, 4, 4, 1);
	ASSERT_EQ(lookup(a, &k, &v), 0);
	ASSERT_EQ(lookup(b, &k, &v), 0);
	ASSERT_EQ(close_range(a, a, 0), 0);
	int other = dup(b); // takes a's number: now the same map as b
	ASSERT_EQ(other, a);
	v = 77;
	ASSERT_EQ(update(other, &k, &v), 0);
	uint32_t out = 0;
	ASSERT_EQ(lookup(b, &k, &out), 0);
	EXPECT_EQ(out, 77u) << "the reused number reaches b's map, not a's stale entry";
	int high = fcntl(b, F_DUPFD_CLOEXEC, 900);
	ASSERT_GE(high, 900);
	ASSERT_EQ(lookup(high, &k, &out), 0);
	closefrom(900);
	EXPECT_EQ(lookup(high, &k, &out), -EBADF);
	close(other);
	close(b);
}

// A ring in an epoll set is held by the set too; when the ring's fd is closed the set lets
// go, and that last reference frees the map, which closes files of its own: the close()
// came back into the epoll layer while it held its lock (found by tests/fuzz: the process
// hung for good in close()). Run in a child, so that a hang fails the test.
TEST(Fd, ClosingARingInAnEpollSetFreesIt)
{
	for (bool close_ring_first : {true, false}) {
		pid_t pid = fork();
		ASSERT_GE(pid, 0);
		if (pid == 0) {
			alarm(10);
			int ep = epoll_create1(EPOLL_CLOEXEC);
			int fd = map_create(u::MAP_TYPE_RINGBUF, 0, 0, 4096);
			epoll_event ev{};
			ev.events = EPOLLIN;
			if (ep < 0 || fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
				_exit(2);
			close(close_ring_first ? fd : ep);
			close(close_ring_first ? ep : fd);
			_exit(0);
		}
		int status;
		ASSERT_EQ(waitpid(pid, &status, 0), pid);
		EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
			<< "close_ring_first " << close_ring_first << ", status " << status;
	}
}

TEST(Fd, HandleOfAClosedFdIsRefused)
{
	int fd = map_create(u::MAP_TYPE_HASH, 4, 4, 4);
	close(fd);
	errno = 0;
	EXPECT_EQ(bpfmap_map_get(fd), nullptr);
	EXPECT_EQ(errno, EBADF);
}

// Closing a map's last fd frees it (unmap, id reaped); the caller's errno, as after any
// successful close(), is what it was.
TEST(Fd, CloseKeepsErrno)
{
	int fd = map_create(u::MAP_TYPE_HASH, 4, 4, 4);
	int other = map_create(u::MAP_TYPE_ARRAY, 4, 4, 4);
	errno = EXDEV;
	ASSERT_EQ(close(fd), 0);
	EXPECT_EQ(errno, EXDEV);
	int spare = dup(other);
	errno = ENOSPC;
	ASSERT_EQ(dup2(spare, other), other); // replaces the array's last other fd
	EXPECT_EQ(errno, ENOSPC);
	errno = EROFS;
	ASSERT_EQ(close_range(other, other, 0), 0);
	EXPECT_EQ(errno, EROFS);
	close(spare);
}

TEST(Fd, DupSharesTheMap)
{
	int fd = map_create(u::MAP_TYPE_HASH, 4, 4, 4);
	int copy = dup(fd);
	uint32_t k = 1, v = 5, out = 0;
	ASSERT_EQ(update(fd, &k, &v), 0);
	close(fd);
	EXPECT_EQ(lookup(copy, &k, &out), 0);
	EXPECT_EQ(out, 5u);
	close(copy);
}

TEST(Info, ReportsTheMapAsCreated)
{
	int fd = map_create(u::MAP_TYPE_HASH, 8, 16, 32,
			    u::BPF_F_NO_PREALLOC | u::BPF_F_RDONLY_PROG, "flows.v1");
	ASSERT_GE(fd, 0);
	u::bpf_map_info info;
	memset(&info, 0xff, sizeof(info));
	memset(&info.hash, 0, 16);
	u::bpf_attr a{};
	a.info.bpf_fd = static_cast<uint32_t>(fd);
	a.info.info_len = sizeof(info);
	a.info.info = ptr(&info);
	ASSERT_EQ(sys(u::OBJ_GET_INFO_BY_FD, a), 0);
	EXPECT_EQ(a.info.info_len, sizeof(info));
	EXPECT_EQ(info.type, u::MAP_TYPE_HASH);
	EXPECT_NE(info.id, 0u);
	EXPECT_EQ(info.key_size, 8u);
	EXPECT_EQ(info.value_size, 16u);
	EXPECT_EQ(info.max_entries, 32u);
	EXPECT_EQ(info.map_flags, u::BPF_F_NO_PREALLOC | u::BPF_F_RDONLY_PROG);
	EXPECT_STREQ(info.name, "flows.v1");
	// As in 6.18: fields the map has no value for keep the caller's bytes.
	EXPECT_EQ(info.btf_id, 0xffffffffu);
	EXPECT_EQ(info.ifindex, 0xffffffffu);
	EXPECT_EQ(info.btf_vmlinux_value_type_id, 0u);
	a.info.info_len = 6;
	ASSERT_EQ(sys(u::OBJ_GET_INFO_BY_FD, a), 0);
	EXPECT_EQ(a.info.info_len, 6u);
	close(fd);
}

TEST(Create, IdsAreUniqueAndNamesAreChecked)
{
	int a = map_create(u::MAP_TYPE_ARRAY, 4, 4, 1);
	int b = map_create(u::MAP_TYPE_ARRAY, 4, 4, 1);
	u::bpf_map_info ia{}, ib{};
	u::bpf_attr x{};
	x.info = {static_cast<uint32_t>(a), sizeof(ia), ptr(&ia)};
	ASSERT_EQ(sys(u::OBJ_GET_INFO_BY_FD, x), 0);
	x.info = {static_cast<uint32_t>(b), sizeof(ib), ptr(&ib)};
	ASSERT_EQ(sys(u::OBJ_GET_INFO_BY_FD, x), 0);
	EXPECT_NE(ia.id, ib.id);
	close(a);
	close(b);
	EXPECT_EQ(map_create(u::MAP_TYPE_HASH, 4, 4, 1, 0, "a-b"), -EINVAL);
	int latin1 = map_create(u::MAP_TYPE_HASH, 4, 4, 1, 0, "\xe9t\xe9");
	EXPECT_GE(latin1, 0) << "Latin-1 letters are alphanumeric to the kernel";
	close(latin1);
}

std::string pin_file(const std::string &bpffs_path)
{
	return std::string(getenv("BPFMAP_PIN_ROOT")) + bpffs_path.substr(strlen("/sys/fs/bpf"));
}

long pin(int fd, const char *path)
{
	u::bpf_attr a{};
	a.obj.pathname = ptr(path);
	a.obj.bpf_fd = static_cast<uint32_t>(fd);
	return sys(u::OBJ_PIN, a);
}

long get(const char *path, uint32_t flags = 0)
{
	u::bpf_attr a{};
	a.obj.pathname = ptr(path);
	a.obj.file_flags = flags;
	return sys(u::OBJ_GET, a);
}

TEST(Pin, PinGetAndTheKernelsErrors)
{
	int fd = map_create(u::MAP_TYPE_HASH, 4, 4, 8);
	const char *path = "/sys/fs/bpf/pin_test_a";
	unlink(pin_file(path).c_str());
	ASSERT_EQ(pin(fd, path), 0);
	struct stat st;
	ASSERT_EQ(stat(pin_file(path).c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 0777, 0600u);
	EXPECT_EQ(pin(fd, path), -EEXIST);
	EXPECT_EQ(pin(fd, "/sys/fs/bpf/no_such_dir/x"), -ENOENT);
	EXPECT_EQ(pin(fd, "/tmp/bpfmap_not_bpffs"), -EPERM);
	EXPECT_EQ(pin(9999, "/sys/fs/bpf/pin_test_b"), -EINVAL);
	EXPECT_EQ(pin(fd, nullptr), -EFAULT);
	EXPECT_EQ(pin(fd, ""), -ENOENT);
	uint32_t k = 3, v = 33, out = 0;
	ASSERT_EQ(update(fd, &k, &v), 0);
	close(fd);
	long again = get(path);
	ASSERT_GE(again, 0);
	EXPECT_EQ(lookup(static_cast<int>(again), &k, &out), 0) << "the pin kept the map alive";
	EXPECT_EQ(out, 33u);
	close(static_cast<int>(again));
	EXPECT_EQ(get("/sys/fs/bpf/pin_test_missing"), -ENOENT);
	EXPECT_EQ(get("/etc/hostname"), -EACCES);
	EXPECT_EQ(get(path, u::BPF_F_RDONLY | u::BPF_F_WRONLY), -EINVAL);
	unlink(pin_file(path).c_str());
	EXPECT_EQ(get(path), -ENOENT);
}

// OBJ_GET's file_flags give the new fd that open mode, and each fd keeps its own rights
// although every fd of the map shares one mapping.
// A pin is its owner's only (0600), as on bpffs: another user, who may reach the pin root,
// gets EACCES from OBJ_GET in every open mode, as the kernel's path permission check says.
TEST(Pin, AnotherUserCannotOpenAPin)
{
	if (geteuid() != 0)
		GTEST_SKIP() << "needs root, to act as another user";
	int fd = map_create(u::MAP_TYPE_HASH, 4, 4, 8);
	const char *path = "/sys/fs/bpf/pin_test_perm";
	unlink(pin_file(path).c_str());
	ASSERT_EQ(pin(fd, path), 0);
	std::string root = pin_file("/sys/fs/bpf");
	struct stat st;
	ASSERT_EQ(stat(root.c_str(), &st), 0);
	ASSERT_EQ(chmod(root.c_str(), 0755), 0); // the directory is not what refuses
	pid_t pid = fork();
	if (pid == 0) {
		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(10);
		int bad = 0;
		for (uint32_t flags : {0u, uint32_t(u::BPF_F_RDONLY), uint32_t(u::BPF_F_WRONLY)})
			bad += get(path, flags) != -EACCES;
		_exit(bad);
	}
	int status = 0;
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	chmod(root.c_str(), st.st_mode & 07777);
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(WEXITSTATUS(status), 0)
		<< "OBJ_GET calls that did not give EACCES (10: setuid failed)";
	// The owner still can.
	long again = get(path);
	EXPECT_GE(again, 0);
	if (again >= 0)
		close(static_cast<int>(again));
	unlink(pin_file(path).c_str());
	close(fd);
}

TEST(Pin, GetReadOnlyAndWriteOnlyFds)
{
	int fd = map_create(u::MAP_TYPE_HASH, 4, 4, 8);
	const char *path = "/sys/fs/bpf/pin_test_modes";
	unlink(pin_file(path).c_str());
	ASSERT_EQ(pin(fd, path), 0);
	uint32_t k = 1, v = 10, out = 0, nk = 0;
	ASSERT_EQ(update(fd, &k, &v), 0);
	int ro = static_cast<int>(get(path, u::BPF_F_RDONLY));
	int wo = static_cast<int>(get(path, u::BPF_F_WRONLY));
	ASSERT_GE(ro, 0);
	ASSERT_GE(wo, 0);
	EXPECT_EQ(fcntl(ro, F_GETFL) & O_ACCMODE, O_RDONLY);
	EXPECT_EQ(fcntl(wo, F_GETFL) & O_ACCMODE, O_WRONLY);

	EXPECT_EQ(lookup(ro, &k, &out), 0);
	EXPECT_EQ(out, 10u);
	EXPECT_EQ(next_key(ro, nullptr, &nk), 0);
	EXPECT_EQ(update(ro, &k, &v), -EPERM);
	EXPECT_EQ(del(ro, &k), -EPERM);
	EXPECT_EQ(elem(u::MAP_LOOKUP_AND_DELETE_ELEM, ro, &k, &out), -EPERM);

	EXPECT_EQ(lookup(wo, &k, &out), -EPERM);
	EXPECT_EQ(next_key(wo, nullptr, &nk), -EPERM);
	EXPECT_EQ(elem(u::MAP_LOOKUP_AND_DELETE_ELEM, wo, &k, &out), -EPERM);
	v = 20;
	EXPECT_EQ(update(wo, &k, &v), 0);
	EXPECT_EQ(lookup(fd, &k, &out), 0) << "the read-write fd is unaffected";
	EXPECT_EQ(out, 20u);

	u::bpf_attr a{};
	a.elem.map_fd = static_cast<uint32_t>(ro);
	EXPECT_EQ(sys(u::MAP_FREEZE, a), -EPERM);
	// A dup shares the open file and so its mode; a fork child inherits it too.
	int ro2 = dup(ro);
	EXPECT_EQ(update(ro2, &k, &v), -EPERM);
	pid_t pid = fork();
	if (pid == 0)
		_exit(update(ro, &k, &v) == -EPERM && lookup(ro, &k, &out) == 0 ? 0 : 1);
	int status;
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(ro2);
	close(ro);
	close(wo);
	unlink(pin_file(path).c_str());
	close(fd);
}

// ---- ids -----------------------------------------------------------------------------

uint32_t map_id(int fd)
{
	u::bpf_map_info info{};
	u::bpf_attr a{};
	a.info.bpf_fd = static_cast<uint32_t>(fd);
	a.info.info_len = sizeof(info);
	a.info.info = ptr(&info);
	EXPECT_EQ(sys(u::OBJ_GET_INFO_BY_FD, a), 0);
	return info.id;
}

long next_id(uint32_t start, uint32_t *next)
{
	u::bpf_attr a{};
	a.id.start_id = start;
	long r = sys(u::MAP_GET_NEXT_ID, a);
	*next = a.id.next_id;
	return r;
}

long fd_by_id(uint32_t id, uint32_t flags = 0)
{
	u::bpf_attr a{};
	a.id.map_id = id;
	a.id.open_flags = flags;
	return sys(u::MAP_GET_FD_BY_ID, a);
}

// Every live id above start, in order, as MAP_GET_NEXT_ID walks them.
std::vector<uint32_t> id_walk()
{
	std::vector<uint32_t> ids;
	uint32_t id = 0, next;
	while (next_id(id, &next) == 0) {
		EXPECT_GT(next, id);
		ids.push_back(next);
		id = next;
	}
	return ids;
}

bool walk_has(uint32_t id)
{
	auto ids = id_walk();
	return std::find(ids.begin(), ids.end(), id) != ids.end();
}

TEST(Ids, WalkAndOpenByIdAsTheKernelDoes)
{
	int a = map_create(u::MAP_TYPE_HASH, 4, 4, 8), b = map_create(u::MAP_TYPE_ARRAY, 4, 4, 2);
	uint32_t ida = map_id(a), idb = map_id(b);
	ASSERT_LT(ida, idb);
	EXPECT_TRUE(walk_has(ida));
	EXPECT_TRUE(walk_has(idb));
	uint32_t next = 0;
	EXPECT_EQ(next_id(ida - 1, &next), 0);
	EXPECT_EQ(next, ida) << "start_id need not exist";
	EXPECT_EQ(next_id(INT32_MAX, &next), -EINVAL);
	EXPECT_EQ(next_id(INT32_MAX - 1, &next), -ENOENT);

	uint32_t k = 1, v = 11, out = 0;
	ASSERT_EQ(update(a, &k, &v), 0);
	int a2 = static_cast<int>(fd_by_id(ida));
	ASSERT_GE(a2, 0);
	EXPECT_EQ(fcntl(a2, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	EXPECT_EQ(lookup(a2, &k, &out), 0);
	EXPECT_EQ(out, 11u);
	int ro = static_cast<int>(fd_by_id(ida, u::BPF_F_RDONLY));
	ASSERT_GE(ro, 0);
	EXPECT_EQ(fcntl(ro, F_GETFL) & O_ACCMODE, O_RDONLY);
	EXPECT_EQ(update(ro, &k, &v), -EPERM);
	EXPECT_EQ(fd_by_id(ida, u::BPF_F_RDONLY | u::BPF_F_WRONLY), -EINVAL);
	EXPECT_EQ(fd_by_id(ida, u::BPF_F_RDONLY_PROG), -EINVAL);
	EXPECT_EQ(fd_by_id(0), -ENOENT);
	EXPECT_EQ(fd_by_id(0xffffffffu), -ENOENT);

	// Gone once nothing holds it: every fd closed, no pin.
	close(a);
	close(ro);
	EXPECT_TRUE(walk_has(ida)) << "a2 still holds it";
	close(a2);
	EXPECT_FALSE(walk_has(ida));
	EXPECT_EQ(fd_by_id(ida), -ENOENT);
	EXPECT_TRUE(walk_has(idb));
	close(b);
}

TEST(Ids, PinnedMapKeepsItsId)
{
	int fd = map_create(u::MAP_TYPE_HASH, 4, 4, 8);
	uint32_t id = map_id(fd);
	const char *path = "/sys/fs/bpf/ids_pinned";
	unlink(pin_file(path).c_str());
	ASSERT_EQ(pin(fd, path), 0);
	close(fd);
	EXPECT_TRUE(walk_has(id));
	int again = static_cast<int>(fd_by_id(id));
	EXPECT_GE(again, 0);
	close(again);
	unlink(pin_file(path).c_str());
	EXPECT_FALSE(walk_has(id)) << "unpinned and unheld";
}

// Another process's map is visible while that process lives, and gone when it is killed.
TEST(Ids, OtherProcessesMapsAndTheirDeath)
{
	int to_child[2], from_child[2];
	ASSERT_EQ(pipe(to_child), 0);
	ASSERT_EQ(pipe(from_child), 0);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = map_create(u::MAP_TYPE_HASH, 4, 4, 8);
		uint32_t k = 7, v = 77;
		update(fd, &k, &v);
		uint32_t id = map_id(fd);
		if (write(from_child[1], &id, sizeof(id)) != sizeof(id))
			_exit(1);
		char c;
		(void)!read(to_child[0], &c, 1); // wait to be killed
		_exit(0);
	}
	uint32_t id = 0;
	ASSERT_EQ(read(from_child[0], &id, sizeof(id)), static_cast<ssize_t>(sizeof(id)));
	EXPECT_TRUE(walk_has(id));
	int fd = static_cast<int>(fd_by_id(id));
	ASSERT_GE(fd, 0);
	uint32_t k = 7, out = 0;
	EXPECT_EQ(lookup(fd, &k, &out), 0);
	EXPECT_EQ(out, 77u);
	kill(pid, SIGKILL);
	int status;
	waitpid(pid, &status, 0);
	EXPECT_TRUE(walk_has(id)) << "we still hold it";
	close(fd);
	EXPECT_FALSE(walk_has(id)) << "its creator was killed and we closed ours";
	close(to_child[0]);
	close(to_child[1]);
	close(from_child[0]);
	close(from_child[1]);
}

// A process that exits lets go of its maps, as the kernel closes its fds: a map it made
// that nothing else holds is gone at once, without waiting for an id walk; a pinned one
// stays; a map it shared with its parent (the same open file) stays with the parent.
TEST(Ids, ExitingProcessLetsGoOfItsMaps)
{
	int shared = map_create(u::MAP_TYPE_HASH, 4, 4, 8);
	uint32_t shared_id = map_id(shared);
	const char *path = "/sys/fs/bpf/ids_exit_pinned";
	unlink(pin_file(path).c_str());
	int ids[2];
	ASSERT_EQ(pipe(ids), 0);
	fflush(nullptr);
	pid_t pid = fork();
	if (pid == 0) {
		int own = map_create(u::MAP_TYPE_HASH, 4, 4, 8);
		int pinned = map_create(u::MAP_TYPE_ARRAY, 4, 4, 2);
		uint32_t k = 1, v = 2;
		uint32_t got[2] = {map_id(own), map_id(pinned)};
		if (update(shared, &k, &v) != 0 || pin(pinned, path) != 0 ||
		    write(ids[1], got, sizeof(got)) != sizeof(got))
			_exit(1);
		exit(0); // not _exit(): the library's teardown runs, as in a program that returns
	}
	uint32_t got[2] = {};
	ASSERT_EQ(read(ids[0], got, sizeof(got)), static_cast<ssize_t>(sizeof(got)));
	int status;
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	EXPECT_EQ(fd_by_id(got[0]), -ENOENT) << "made by the child, held by nobody";
	int again = static_cast<int>(fd_by_id(got[1]));
	EXPECT_GE(again, 0) << "pinned";
	close(again);
	unlink(pin_file(path).c_str());
	uint32_t k = 1, out = 0;
	EXPECT_EQ(lookup(shared, &k, &out), 0);
	EXPECT_EQ(out, 2u) << "the child's write to our map";
	EXPECT_TRUE(walk_has(shared_id)) << "we hold it";
	close(shared);
	close(ids[0]);
	close(ids[1]);
}

TEST(Share, ForkedChildWritesTheParentSees)
{
	int fd = map_create(u::MAP_TYPE_HASH, 4, 8, 1000);
	pid_t pid = fork();
	if (pid == 0) {
		for (uint32_t k = 0; k < 500; k++) {
			uint64_t v = k * 3ull;
			if (update(fd, &k, &v) != 0)
				_exit(1);
		}
		_exit(0);
	}
	int status;
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	for (uint32_t k = 0; k < 500; k++) {
		uint64_t v;
		ASSERT_EQ(lookup(fd, &k, &v), 0);
		EXPECT_EQ(v, k * 3ull);
	}
	close(fd);
}

// A program started on its own (not forked from us) opens the pin and writes to it.
TEST(Share, SeparateProgramOpensThePin)
{
	int fd = map_create(u::MAP_TYPE_HASH, 4, 8, 64);
	const char *path = "/sys/fs/bpf/pin_peer_map";
	unlink(pin_file(path).c_str());
	ASSERT_EQ(pin(fd, path), 0);
	uint32_t k = 1;
	uint64_t v = 100;
	ASSERT_EQ(update(fd, &k, &v), 0);
	const char *argv[] = {PIN_PEER, path, nullptr};
	pid_t pid;
	ASSERT_EQ(posix_spawn(&pid, PIN_PEER, nullptr, nullptr, const_cast<char **>(argv), environ),
		  0);
	int status;
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0) << "the peer found our value";
	k = 2;
	ASSERT_EQ(lookup(fd, &k, &v), 0);
	EXPECT_EQ(v, 200u) << "the peer's write is visible here";
	unlink(pin_file(path).c_str());
	close(fd);
}

// The zero-tail check reads words: every byte of every length and alignment still counts.
TEST(Uaccess, MemNonzeroSeesEveryByte)
{
	alignas(8) unsigned char buf[64] = {};
	for (size_t start = 0; start < 8; start++) {
		for (size_t n = 0; start + n <= sizeof(buf); n++) {
			EXPECT_FALSE(bpfmap::mem_nonzero(buf + start, n));
			for (size_t at = 0; at < n; at++) {
				for (unsigned char v : {0x01, 0x80}) {
					buf[start + at] = v;
					ASSERT_TRUE(bpfmap::mem_nonzero(buf + start, n))
						<< "start " << start << " n " << n << " at " << at;
					buf[start + at] = 0;
				}
			}
			// Bytes just outside [start, start + n) are not read as part of it.
			if (start)
				buf[start - 1] = 1;
			if (start + n < sizeof(buf))
				buf[start + n] = 1;
			EXPECT_FALSE(bpfmap::mem_nonzero(buf + start, n)) << start << " " << n;
			memset(buf, 0, sizeof(buf));
		}
	}
}

} // namespace
