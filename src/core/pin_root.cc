#include "core/pin_root.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

#include "core/region.h"

namespace bpfmap {
namespace {

// Make the missing directories of path, each 0700: a root the user names may not exist yet.
void mkdir_p(const std::string &path)
{
	for (size_t i = 1; i <= path.size(); i++)
		if (i == path.size() || path[i] == '/')
			mkdir(path.substr(0, i).c_str(), 0700);
}

bool caller_in_group(gid_t g)
{
	if (g == getegid())
		return true;
	int n = getgroups(0, nullptr);
	if (n <= 0)
		return false;
	std::vector<gid_t> groups(static_cast<size_t>(n));
	n = getgroups(n, groups.data());
	for (int i = 0; i < n; i++)
		if (groups[static_cast<size_t>(i)] == g)
			return true;
	return false;
}

// Said once per process: a tool that pins many times should not repeat it.
void refuse_once(const char *why)
{
	static std::atomic<bool> said{false};
	if (!said.exchange(true))
		fprintf(stderr,
			"bpfmap: refusing pin root %s: %s (see BPFMAP_PIN_ROOT in README)\n",
			pin_root().c_str(), why);
}

} // namespace

// Never destroyed: map ids are still reaped at exit, after static objects are gone.
const std::string &pin_root()
{
	static const std::string &root = *new std::string([] {
		const char *env = getenv("BPFMAP_PIN_ROOT");
		std::string r = env && *env ? env : "/dev/shm/bpfmap-" + std::to_string(geteuid());
		while (r.size() > 1 && r.back() == '/')
			r.pop_back();
		return r;
	}());
	return root;
}

bool root_dir_safe(uid_t owner, gid_t group, mode_t mode, const char **why)
{
	bool mine = owner == geteuid();
	// Set up for sharing on purpose: by its owner, or for a group the caller is in.
	bool group_dir = (mode & S_ISGID) && (mode & S_IWGRP) && (mine || caller_in_group(group));
	if (!S_ISDIR(mode))
		*why = "not a directory";
	else if (mode & S_IWOTH)
		*why = "writable by others";
	else if ((mode & S_IWGRP) && !group_dir)
		*why = "group-writable, but not a setgid directory of one of the caller's groups";
	else if (!mine && !group_dir)
		*why = "owned by another user";
	else
		return true;
	return false;
}

root_dir::root_dir()
{
	const std::string &root = pin_root();
	constexpr int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
	fd_ = ::open(root.c_str(), flags);
	if (fd_ < 0 && errno == ENOENT) {
		mkdir_p(root);
		fd_ = ::open(root.c_str(), flags);
	}
	const char *why = nullptr;
	struct stat st;
	if (fd_ < 0) {
		if (errno == ELOOP || errno == ENOTDIR)
			why = lstat(root.c_str(), &st) == 0 && S_ISLNK(st.st_mode)
				      ? "a symlink"
				      : "not a directory";
		else if (errno == EACCES)
			why = "permission denied";
		else
			err_ = -errno;
	} else if (file_stat(fd_, &st) != 0) {
		err_ = -errno;
	} else {
		root_dir_safe(st.st_uid, st.st_gid, st.st_mode, &why);
	}
	if (why) {
		refuse_once(why);
		err_ = -EACCES;
	}
	if (err_ && fd_ >= 0) {
		::close(fd_);
		fd_ = -1;
	}
}

root_dir::~root_dir()
{
	if (fd_ >= 0)
		::close(fd_);
}

std::string root_dir::path(const std::string &rel) const
{
	return "/proc/self/fd/" + std::to_string(fd_) + "/" + (rel.empty() ? "." : rel);
}

int open_beneath(int dir_fd, const std::string &rel, int flags, mode_t mode)
{
	struct open_how how = {};
	how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
	how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
	long fd = syscall(SYS_openat2, dir_fd, rel.empty() ? "." : rel.c_str(), &how, sizeof(how));
	return fd < 0 ? -errno : static_cast<int>(fd);
}

int root_dir::open(const std::string &rel, int flags, mode_t mode) const
{
	return err_ ? err_ : open_beneath(fd_, rel, flags, mode);
}

int root_dir::open_parent(const std::string &rel, std::string *base) const
{
	std::string r = rel;
	while (!r.empty() && r.back() == '/')
		r.pop_back();
	size_t slash = r.find_last_of('/');
	*base = slash == std::string::npos ? r : r.substr(slash + 1);
	return open(slash == std::string::npos ? "" : r.substr(0, slash), O_PATH | O_DIRECTORY);
}

int pin_root_tmpfile()
{
	int fd = root_dir().open("", O_TMPFILE | O_RDWR, 0600);
	if (fd < 0)
		return fd;
	// The root's own fd was open while the file was made, and is closed now.
	int low = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (low >= 0 && low < fd) {
		close(fd);
		return low;
	}
	if (low >= 0)
		close(low);
	return fd;
}

} // namespace bpfmap
