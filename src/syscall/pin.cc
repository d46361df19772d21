#include "syscall/pin.h"

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

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

// The file behind a pin path, and whether the path lies in our stand-in for bpffs.
struct pin_path {
	std::string file;
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
	if (bpffs_file(abs.c_str(), &out->file)) {
		out->in_bpffs = true;
	} else {
		const std::string &root = pin_root();
		out->file = abs;
		out->in_bpffs = abs == root || under(abs, root);
	}
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

} // namespace

bool bpffs_file(const char *path, std::string *file)
{
	if (strcmp(path, BPFFS) != 0 && !under(path, BPFFS))
		return false;
	*file = pin_root() + (path + strlen(BPFFS));
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
	struct stat st;
	if (lstat(p.file.c_str(), &st) == 0)
		return -EEXIST;
	if (stat(parent_of(p.file).c_str(), &st) != 0)
		return -ENOENT;
	if (!p.in_bpffs)
		return -EPERM;
	err = file_link(static_cast<int>(attr.bpf_fd), p.file);
	return err == -EXDEV ? -EPERM : err; // a memfd region cannot be pinned
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
	struct stat st;
	if (stat(p.file.c_str(), &st) != 0)
		return -ENOENT;
	if (!p.in_bpffs || !S_ISREG(st.st_mode))
		return -EACCES;
	int fd = open(p.file.c_str(), bpf_file_mode(attr.file_flags) | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ENOENT : -EACCES;
	rcu_guard g;
	if (!map_from_fd(fd, &err)) {
		close(fd);
		return -EACCES; // a file in the pin root that is not a map
	}
	id_hold(fd);
	return fd;
}

} // namespace bpfmap
