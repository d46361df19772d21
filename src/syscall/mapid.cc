#include "syscall/mapid.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <dirent.h>
#include <fcntl.h>
#include <string>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "core/rcu.h"
#include "core/region.h"
#include "syscall/objtab.h"

namespace bpfmap {
namespace {

const std::string &id_dir()
{
	static const std::string dir = [] {
		std::string d = pin_root() + "/.bpfmap-by-id";
		mkdir(d.c_str(), 0700);
		return d;
	}();
	return dir;
}

std::string id_path(uint32_t id) { return id_dir() + "/" + std::to_string(id); }

// The id an entry of the id directory names, or 0.
uint32_t entry_id(const char *name)
{
	char *end;
	unsigned long v = strtoul(name, &end, 10);
	return *name && !*end && v > 0 && v < INT_MAX ? static_cast<uint32_t>(v) : 0;
}

// Open the map behind an id with a shared lock held; -ENOENT if it is gone.
int open_held(uint32_t id, int mode)
{
	std::string path = id_path(id);
	int fd = open(path.c_str(), mode | O_CLOEXEC);
	if (fd < 0)
		return -ENOENT;
	// A reaper removes the link while holding the exclusive lock: once ours is granted,
	// the link is either still there (and the map held by us) or gone.
	struct stat a, b;
	if (flock(fd, LOCK_SH) != 0 || file_stat(fd, &a) != 0 || stat(path.c_str(), &b) != 0 ||
	    a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
		close(fd);
		return -ENOENT;
	}
	return fd;
}

} // namespace

void map_id_publish(int fd, uint32_t id)
{
	// Lock first: a reaper must never see the new link unheld.
	flock(fd, LOCK_SH);
	std::string src = "/proc/self/fd/" + std::to_string(fd);
	linkat(AT_FDCWD, src.c_str(), AT_FDCWD, id_path(id).c_str(), AT_SYMLINK_FOLLOW);
}

void map_id_hold(int fd) { flock(fd, LOCK_SH); }

bool map_id_reap(uint32_t id)
{
	std::string path = id_path(id);
	int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true;
	bool gone = false;
	struct stat st;
	if (flock(fd, LOCK_EX | LOCK_NB) == 0 && file_stat(fd, &st) == 0 && st.st_nlink == 1) {
		unlink(path.c_str());
		gone = true;
	}
	close(fd); // drops the lock
	return gone;
}

long map_get_next_id(uapi::id_attr &attr, bool bad_tail)
{
	if (bad_tail || attr.start_id >= INT_MAX)
		return -EINVAL;
	DIR *d = opendir(id_dir().c_str());
	if (!d)
		return -ENOENT;
	// Candidates in id order; the smallest live one wins.
	std::vector<uint32_t> ids;
	while (dirent *e = readdir(d))
		if (uint32_t id = entry_id(e->d_name); id > attr.start_id)
			ids.push_back(id);
	closedir(d);
	std::sort(ids.begin(), ids.end());
	for (uint32_t id : ids) {
		if (map_id_reap(id))
			continue;
		attr.next_id = id;
		return 0;
	}
	return -ENOENT;
}

long map_get_fd_by_id(const uapi::id_attr &attr, bool bad_tail)
{
	constexpr uint32_t mask = uapi::BPF_F_RDONLY | uapi::BPF_F_WRONLY;
	if (bad_tail || (attr.open_flags & ~mask))
		return -EINVAL;
	if ((attr.open_flags & mask) == mask)
		return -EINVAL;
	if (attr.map_id == 0 || attr.map_id >= INT_MAX)
		return -ENOENT;
	int fd = open_held(attr.map_id, bpf_file_mode(attr.open_flags));
	if (fd < 0)
		return fd;
	rcu_guard g;
	int err;
	if (!map_from_fd(fd, &err)) {
		close(fd);
		return -ENOENT;
	}
	return fd;
}

} // namespace bpfmap
