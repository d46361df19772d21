#include "syscall/pin.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

#include "core/pin_root.h"
#include "core/rcu.h"
#include "core/region.h"
#include "syscall/mapid.h"
#include "syscall/objtab.h"

namespace bpfmap {
namespace {

constexpr const char *BPFFS = "/sys/fs/bpf";

// Make path absolute against path_fd (AT_FDCWD or a directory fd), as openat() would.
int absolute_path(const char *path, int path_fd, std::string *out)
{
	if (path[0] == '/') {
		*out = path;
		return 0;
	}
	char dir[PATH_MAX];
	if (path_fd == AT_FDCWD) {
		if (!getcwd(dir, sizeof(dir)))
			return -errno;
	} else {
		std::string link = "/proc/self/fd/" + std::to_string(path_fd);
		ssize_t n = readlink(link.c_str(), dir, sizeof(dir) - 1);
		if (n < 0)
			return -EBADF;
		dir[n] = 0;
	}
	*out = std::string(dir) + "/" + path;
	return 0;
}

bool under(const std::string &path, const std::string &dir)
{
	return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
	       path[dir.size()] == '/';
}

// Where a pin path leads: below the pin root (our stand-in for bpffs), or elsewhere.
struct pin_path {
	std::string rel;     // relative to the root ("" for the root itself), when in_bpffs
	std::string outside; // the absolute path, when not
	bool in_bpffs = false;
};

int resolve(uint64_t upath, int path_fd, pin_path *out)
{
	const char *path = reinterpret_cast<const char *>(static_cast<uintptr_t>(upath));
	if (reinterpret_cast<uintptr_t>(path) < 4096)
		return -EFAULT;
	if (!*path)
		return -ENOENT;
	std::string abs;
	int err = absolute_path(path, path_fd, &abs);
	if (err)
		return err;
	const std::string &root = pin_root();
	if (bpffs_rel(abs.c_str(), &out->rel))
		out->in_bpffs = true;
	else if (abs == root || under(abs, root))
		out->in_bpffs = true, out->rel = abs.substr(std::min(abs.size(), root.size() + 1));
	else
		out->outside = abs;
	return 0;
}

int check_path_fd(const uapi::obj_attr &attr, int *path_fd)
{
	if (!(attr.file_flags & uapi::BPF_F_PATH_FD) && attr.path_fd)
		return -EINVAL;
	*path_fd = (attr.file_flags & uapi::BPF_F_PATH_FD) ? attr.path_fd : AT_FDCWD;
	return 0;
}

std::string parent_of(const std::string &path)
{
	size_t slash = path.find_last_of('/');
	return slash == 0 ? "/" : path.substr(0, slash);
}

// A pin named rel below the root: the hard link made through the root's open directory,
// so that a directory swapped in under the root's name never receives it.
int pin_below_root(int fd, const std::string &rel)
{
	root_dir root;
	if (root.error())
		return root.error();
	std::string base;
	int dir = root.open_parent(rel, &base);
	if (dir < 0)
		return -ENOENT;
	if (base.empty()) {
		close(dir);
		return -EEXIST; // the root itself
	}
	struct stat st;
	int err = fstatat(dir, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0
			  ? -EEXIST
			  : file_link(fd, dir, base);
	close(dir);
	return err == -EXDEV ? -EPERM : err; // a memfd region cannot be pinned
}

// The pin named rel below the root opened with mode (never through a symlink): the fd or
// the errno OBJ_GET gives.
int open_below_root(const std::string &rel, int mode)
{
	root_dir root;
	if (root.error())
		return root.error();
	int path_fd = root.open(rel, O_PATH);
	if (path_fd < 0)
		return path_fd == -ENOENT || path_fd == -ENOTDIR ? -ENOENT : -EACCES;
	struct stat st;
	int fd = file_stat(path_fd, &st) == 0 && S_ISREG(st.st_mode) ? file_reopen(path_fd, mode)
								     : -EACCES;
	close(path_fd);
	return fd >= 0 || fd == -ENOENT ? fd : -EACCES;
}

} // namespace

bool bpffs_rel(const char *path, std::string *rel)
{
	if (strcmp(path, BPFFS) != 0 && !under(path, BPFFS))
		return false;
	const char *rest = path + strlen(BPFFS);
	*rel = *rest ? rest + 1 : rest;
	return true;
}

long obj_pin(const uapi::obj_attr &attr, bool bad_tail)
{
	if (bad_tail || (attr.file_flags & ~uapi::BPF_F_PATH_FD))
		return -EINVAL;
	int path_fd;
	int err = check_path_fd(attr, &path_fd);
	if (err)
		return err;
	{
		rcu_guard g;
		if (!map_from_fd(static_cast<int>(attr.bpf_fd), &err))
			return -EINVAL; // the kernel says EINVAL for a closed fd here too
	}
	pin_path p;
	if ((err = resolve(attr.pathname, path_fd, &p)))
		return err;
	if (p.in_bpffs)
		return pin_below_root(static_cast<int>(attr.bpf_fd), p.rel);
	struct stat st;
	if (lstat(p.outside.c_str(), &st) == 0)
		return -EEXIST;
	if (stat(parent_of(p.outside).c_str(), &st) != 0)
		return -ENOENT;
	return -EPERM;
}

long obj_get(const uapi::obj_attr &attr, bool bad_tail)
{
	constexpr uint32_t mask = uapi::BPF_F_RDONLY | uapi::BPF_F_WRONLY | uapi::BPF_F_PATH_FD;
	if (bad_tail || attr.bpf_fd != 0 || (attr.file_flags & ~mask))
		return -EINVAL;
	if ((attr.file_flags & uapi::BPF_F_RDONLY) && (attr.file_flags & uapi::BPF_F_WRONLY))
		return -EINVAL;
	int path_fd;
	int err = check_path_fd(attr, &path_fd);
	if (err)
		return err;
	pin_path p;
	if ((err = resolve(attr.pathname, path_fd, &p)))
		return err;
	if (!p.in_bpffs) {
		struct stat st;
		return stat(p.outside.c_str(), &st) != 0 ? -ENOENT : -EACCES;
	}
	int fd = open_below_root(p.rel, bpf_file_mode(attr.file_flags));
	if (fd < 0)
		return fd;
	rcu_guard g;
	if (!map_from_fd(fd, &err)) {
		close(fd);
		// EINVAL: no valid map header; EPERM: a map of another PID namespace
		return err == -EINVAL || err == -EPERM ? err : -EACCES;
	}
	id_hold(fd);
	return fd;
}

} // namespace bpfmap
