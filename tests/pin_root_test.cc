// The pin root as a trust boundary (core/pin_root.h): a root that someone else controls is
// refused, paths never leave the root, another user reaches a pin only as its mode allows,
// and a process of another PID namespace may not attach a map. Each case runs tests/pin_peer
// as a fresh program (the pin root is chosen once per process), with the root, user and
// groups the case needs; cases that switch users or namespaces need root and skip
// otherwise.
#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <grp.h>
#include <gtest/gtest.h>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "test_util.h"

using namespace bpfmap::test;
namespace fs = std::filesystem;

namespace {

constexpr uid_t NOBODY = 65534;
constexpr gid_t SHARE_GID = 4242; // a group nobody else on the machine uses

struct run_as {
	uid_t uid = geteuid();
	std::vector<gid_t> groups; // supplementary groups (with uid != euid)
};

struct peer_result {
	int status = -1; // exit code, or -1 when the peer did not exit normally
	std::string err; // what it printed on stderr
};

// Run pin_peer with args under pin root `root` ("" for the default) as `who`.
peer_result peer(const std::string &root, const std::vector<std::string> &args, run_as who = {},
		 bool new_pid_ns = false)
{
	char errpath[] = "/tmp/pin-root-test-XXXXXX";
	int errfd = mkstemp(errpath);
	std::vector<std::string> argv;
	if (new_pid_ns)
		argv = {"unshare", "--pid", "--fork"};
	argv.push_back(PIN_PEER);
	argv.insert(argv.end(), args.begin(), args.end());
	pid_t pid = fork();
	if (pid == 0) {
		dup2(errfd, 2);
		if (root.empty())
			unsetenv("BPFMAP_PIN_ROOT");
		else
			setenv("BPFMAP_PIN_ROOT", root.c_str(), 1);
		if (who.uid != geteuid()) {
			gid_t gid = who.groups.empty() ? NOBODY : who.groups[0];
			if (setgroups(who.groups.size(), who.groups.data()) != 0 ||
			    setgid(gid) != 0 || setuid(who.uid) != 0)
				_exit(250);
		}
		std::vector<char *> av;
		for (std::string &a : argv)
			av.push_back(a.data());
		av.push_back(nullptr);
		execvp(av[0], av.data());
		_exit(251);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	peer_result r;
	r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	std::ifstream in(errpath);
	std::stringstream ss;
	ss << in.rdbuf();
	r.err = ss.str();
	close(errfd);
	unlink(errpath);
	return r;
}

// A fresh directory under /dev/shm with the given owner, group and mode.
std::string make_dir(mode_t mode, uid_t owner = geteuid(), gid_t group = getegid())
{
	char tmpl[] = "/dev/shm/bpfmap-root-test-XXXXXX";
	std::string d = mkdtemp(tmpl);
	EXPECT_EQ(chown(d.c_str(), owner, group), 0);
	EXPECT_EQ(chmod(d.c_str(), mode), 0); // after chown, which clears setgid
	return d;
}

bool empty_dir(const std::string &d) { return fs::is_empty(d); }

struct dir_cleanup {
	std::vector<std::string> dirs;
	~dir_cleanup()
	{
		std::error_code ec;
		for (const std::string &d : dirs)
			fs::remove_all(d, ec);
	}
};

#define NEED_ROOT()                                                          \
	do {                                                                 \
		if (geteuid() != 0)                                          \
			GTEST_SKIP() << "needs root to act as another user"; \
	} while (0)

void expect_refused(const peer_result &r, const char *why)
{
	EXPECT_EQ(r.status, EACCES) << r.err;
	EXPECT_NE(r.err.find("refusing pin root"), std::string::npos) << r.err;
	EXPECT_NE(r.err.find(why), std::string::npos) << r.err;
}

} // namespace

TEST(PinRoot, OwnRootWorks)
{
	dir_cleanup c;
	std::string d = make_dir(0700);
	c.dirs.push_back(d);
	EXPECT_EQ(peer(d, {"mkpin", "/sys/fs/bpf/m"}).status, 0);
	EXPECT_TRUE(fs::exists(d + "/m"));
	EXPECT_EQ(peer(d, {"get", "/sys/fs/bpf/m"}).status, 0);
}

TEST(PinRoot, WritableByOthersIsRefused)
{
	dir_cleanup c;
	std::string d = make_dir(0777);
	c.dirs.push_back(d);
	expect_refused(peer(d, {"mkpin", "/sys/fs/bpf/m"}), "writable by others");
	EXPECT_TRUE(empty_dir(d)) << "nothing is made in a refused root";
}

TEST(PinRoot, GroupWritableWithoutSetgidIsRefused)
{
	dir_cleanup c;
	std::string d = make_dir(0770);
	c.dirs.push_back(d);
	expect_refused(peer(d, {"mkpin", "/sys/fs/bpf/m"}), "group-writable");
	EXPECT_TRUE(empty_dir(d));
}

TEST(PinRoot, SymlinkIsRefused)
{
	dir_cleanup c;
	std::string d = make_dir(0700);
	std::string link = d + "-link";
	c.dirs.push_back(d);
	c.dirs.push_back(link);
	ASSERT_EQ(symlink(d.c_str(), link.c_str()), 0);
	expect_refused(peer(link, {"mkpin", "/sys/fs/bpf/m"}), "a symlink");
	EXPECT_TRUE(empty_dir(d));
}

// The attack from issue 18: another user plants the root, world-writable, before root's
// first pin. Root's pin must never land there.
TEST(PinRoot, PlantedByAnotherUserIsRefused)
{
	NEED_ROOT();
	dir_cleanup c;
	std::string open_dir = make_dir(0777, NOBODY, NOBODY);
	std::string closed_dir = make_dir(0700, NOBODY, NOBODY);
	c.dirs = {open_dir, closed_dir};
	expect_refused(peer(open_dir, {"mkpin", "/sys/fs/bpf/m"}), "writable by others");
	expect_refused(peer(closed_dir, {"mkpin", "/sys/fs/bpf/m"}), "owned by another user");
	EXPECT_TRUE(empty_dir(open_dir));
	EXPECT_TRUE(empty_dir(closed_dir));
}

TEST(PinRoot, DefaultIsPerUserAndPrivate)
{
	NEED_ROOT();
	std::string d = "/dev/shm/bpfmap-" + std::to_string(NOBODY);
	dir_cleanup c;
	if (!fs::exists(d))
		c.dirs.push_back(d); // made by this test: removed after it
	EXPECT_EQ(peer("", {"mkpin", "/sys/fs/bpf/pin-root-test-m"}, {NOBODY, {}}).status, 0);
	struct stat st;
	ASSERT_EQ(lstat(d.c_str(), &st), 0);
	EXPECT_TRUE(S_ISDIR(st.st_mode));
	EXPECT_EQ(st.st_uid, NOBODY);
	EXPECT_EQ(st.st_mode & 07777, 0700u);
	EXPECT_TRUE(fs::exists(d + "/pin-root-test-m"));
	unlink((d + "/pin-root-test-m").c_str());
}

// Sharing on purpose: a setgid group directory; each pin opens only as its mode allows.
TEST(PinRoot, GroupDirectorySharesAsPinModesAllow)
{
	NEED_ROOT();
	dir_cleanup c;
	std::string d = make_dir(03770, 0, SHARE_GID);
	c.dirs.push_back(d);
	run_as member{NOBODY, {SHARE_GID}};
	run_as stranger{NOBODY, {NOBODY}};
	ASSERT_EQ(peer(d, {"mkpin", "/sys/fs/bpf/m"}).status, 0);
	std::string pin = d + "/m";
	struct stat st;
	ASSERT_EQ(stat(pin.c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 0777, 0600u) << "a pin is the owner's alone, as in bpffs";
	EXPECT_EQ(peer(d, {"get", "/sys/fs/bpf/m"}, member).status, EACCES);
	ASSERT_EQ(chmod(pin.c_str(), 0660), 0);
	EXPECT_EQ(peer(d, {"get", "/sys/fs/bpf/m"}, member).status, 0)
		<< "a group member opens a group-readable and -writable pin";
	expect_refused(peer(d, {"get", "/sys/fs/bpf/m"}, stranger), "permission denied");
	EXPECT_EQ(peer(d, {"mkpin", "/sys/fs/bpf/n"}, member).status, 0);
}

// Paths below the root never leave it: no "..", no symlink, in OBJ_GET and OBJ_PIN.
TEST(PinRoot, PathsStayBelowTheRoot)
{
	dir_cleanup c;
	std::string d = make_dir(0700);
	std::string outside = make_dir(0700);
	c.dirs = {d, outside};
	ASSERT_EQ(peer(outside, {"mkpin", "/sys/fs/bpf/m"}).status, 0);
	ASSERT_EQ(symlink((outside + "/m").c_str(), (d + "/link").c_str()), 0);
	ASSERT_EQ(symlink(outside.c_str(), (d + "/dir").c_str()), 0);
	std::string up = "/sys/fs/bpf/../" + fs::path(outside).filename().string() + "/m";
	EXPECT_EQ(peer(d, {"get", "/sys/fs/bpf/link"}).status, EACCES) << "a symlink";
	EXPECT_EQ(peer(d, {"get", "/sys/fs/bpf/dir/m"}).status, EACCES) << "through a symlink";
	EXPECT_NE(peer(d, {"get", up}).status, 0) << "'..' out of the root";
	EXPECT_EQ(peer(d, {"mkpin", "/sys/fs/bpf/dir/n"}).status, ENOENT);
	EXPECT_FALSE(fs::exists(outside + "/n")) << "a pin through a symlink lands nowhere";
}

// bpfmap's locks and liveness checks name threads by id, valid in one PID namespace only:
// a sharer from another one is refused at attach.
TEST(PidNs, SharerInAnotherNamespaceIsRefused)
{
	NEED_ROOT();
	if (system("unshare --pid --fork true 2>/dev/null") != 0)
		GTEST_SKIP() << "unshare --pid --fork is not available here";
	dir_cleanup c;
	std::string d = make_dir(0700);
	c.dirs.push_back(d);
	ASSERT_EQ(peer(d, {"mkpin", "/sys/fs/bpf/m"}).status, 0);
	EXPECT_EQ(peer(d, {"get", "/sys/fs/bpf/m"}).status, 0) << "the same namespace attaches";
	peer_result r = peer(d, {"get", "/sys/fs/bpf/m"}, {}, true);
	EXPECT_EQ(r.status, EPERM) << r.err;
	EXPECT_NE(r.err.find("another PID namespace"), std::string::npos) << r.err;
	r = peer(d, {"mkpin", "/sys/fs/bpf/n"}, {}, true);
	EXPECT_EQ(r.status, 0) << "a map made in the new namespace is its own: " << r.err;
	EXPECT_EQ(peer(d, {"get", "/sys/fs/bpf/n"}).status, EPERM)
		<< "and the first namespace may not attach it";
}

// A region whose header does not describe a valid map of its size is refused at attach
// (EINVAL), by OBJ_GET and by MAP_GET_FD_BY_ID, and never mapped.
TEST(PinRoot, CorruptHeaderIsRefusedAtAttach)
{
	dir_cleanup c;
	std::string d = make_dir(0700);
	c.dirs.push_back(d);
	struct field {
		size_t off; // in the header page (core/map.h's map_header)
		uint32_t value;
	} bad[] = {
		{12, 0},	// key_size
		{12, 1u << 20}, // key_size beyond what the file holds
		{16, 0},	// value_size
		{20, 0},	// max_entries
		{20, 1u << 30}, // max_entries
		{8, 27},	// map_type: a ring buffer of 4 bytes cannot be
		{8, 0x7fff},	// no such type
	};
	for (const field &f : bad) {
		std::string name = "m" + std::to_string(f.off) + "-" + std::to_string(f.value);
		ASSERT_EQ(peer(d, {"mkpin", "/sys/fs/bpf/" + name}).status, 0);
		int fd = open((d + "/" + name).c_str(), O_RDWR);
		ASSERT_GE(fd, 0);
		struct stat st;
		ASSERT_EQ(fstat(fd, &st), 0);
		ASSERT_EQ(pwrite(fd, &f.value, 4, st.st_size - 4096 + static_cast<off_t>(f.off)),
			  4);
		close(fd);
		peer_result r = peer(d, {"get", "/sys/fs/bpf/" + name});
		EXPECT_EQ(r.status, EINVAL) << name << ": " << r.err;
	}
}

// The id directories are reached without following a symlink: an id directory replaced by
// a link to elsewhere receives no id link.
TEST(PinRoot, IdDirectoryThroughASymlinkIsNotUsed)
{
	dir_cleanup c;
	std::string d = make_dir(0700);
	std::string outside = make_dir(0700);
	c.dirs = {d, outside};
	ASSERT_EQ(symlink(outside.c_str(), (d + "/.bpfmap-by-id").c_str()), 0);
	EXPECT_EQ(peer(d, {"mkpin", "/sys/fs/bpf/m"}).status, 0);
	EXPECT_TRUE(empty_dir(outside)) << "an id link was made through the symlink";
}
