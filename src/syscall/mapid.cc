#include "syscall/mapid.h"

#include <algorithm>
#include <array>
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

#include "core/pin_root.h"
#include "core/rcu.h"
#include "core/region.h"
#include "syscall/objtab.h"

namespace bpfmap {
namespace {

// The id directories, below the pin root.
const char *table_name(id_table t)
{
	return t == id_table::btf ? ".bpfmap-btf-by-id" : ".bpfmap-by-id";
}

// One id directory, opened below the root (never through a symlink): its links are made,
// opened, looked at and removed relative to this fd, so a directory swapped in under its
// name is never acted on.
struct table_dir {
	int fd;
	table_dir(const root_dir &root, id_table t)
		: fd(root.open(table_name(t), O_PATH | O_DIRECTORY))
	{
	}
	~table_dir()
	{
		if (fd >= 0)
			close(fd);
	}
	table_dir(const table_dir &) = delete;
	table_dir &operator=(const table_dir &) = delete;
};

// BTF object btf_id's link for map map_id: "<btf id>.m<map id>", never taken for an id.
std::string btf_ref_name(uint32_t btf_id, uint32_t map_id)
{
	return std::to_string(btf_id) + ".m" + std::to_string(map_id);
}

// The id an entry of an id directory names, or 0.
uint32_t entry_id(const char *name)
{
	char *end;
	unsigned long v = strtoul(name, &end, 10);
	return *name && !*end && v > 0 && v < INT_MAX ? static_cast<uint32_t>(v) : 0;
}

// Open the object behind an id with a shared lock held; -ENOENT if it is gone.
int open_held(const root_dir &root, id_table t, uint32_t id, int mode)
{
	table_dir dir(root, t);
	std::string name = std::to_string(id);
	int fd = dir.fd < 0 ? -1 : open_beneath(dir.fd, name, mode);
	if (fd < 0)
		return -ENOENT;
	// A reaper removes the link while holding the exclusive lock: once ours is granted,
	// the link is either still there (and the object held by us) or gone.
	struct stat a, b;
	if (flock(fd, LOCK_SH) != 0 || file_stat(fd, &a) != 0 ||
	    fstatat(dir.fd, name.c_str(), &b, AT_SYMLINK_NOFOLLOW) != 0 || a.st_ino != b.st_ino ||
	    a.st_dev != b.st_dev) {
		close(fd);
		return -ENOENT;
	}
	return fd;
}

bool reap_in(const root_dir &root, id_table t, uint32_t id);

// A map going away lets go of the BTF object it was made with, which goes too if nothing
// else holds it.
void drop_btf_ref(const root_dir &root, int map_fd, uint32_t map_id)
{
	map_header hdr;
	size_t size;
	dev_t dev;
	ino_t ino;
	if (region_read_header(map_fd, &hdr, &size, &dev, &ino) != 0 || !hdr.btf_id)
		return;
	table_dir dir(root, id_table::btf);
	if (dir.fd >= 0)
		unlinkat(dir.fd, btf_ref_name(hdr.btf_id, map_id).c_str(), 0);
	reap_in(root, id_table::btf, hdr.btf_id);
}

// id_reap() in a root already open.
bool reap_in(const root_dir &root, id_table t, uint32_t id)
{
	table_dir dir(root, t);
	std::string name = std::to_string(id);
	int fd = dir.fd < 0 ? -1 : open_beneath(dir.fd, name, O_RDONLY);
	if (fd < 0)
		return true;
	bool gone = false;
	struct stat st;
	if (flock(fd, LOCK_EX | LOCK_NB) == 0 && file_stat(fd, &st) == 0 && st.st_nlink == 1) {
		unlinkat(dir.fd, name.c_str(), 0);
		if (t == id_table::map)
			drop_btf_ref(root, fd, id);
		gone = true;
	}
	close(fd); // drops the lock
	return gone;
}

} // namespace

void id_publish(id_table t, int fd, uint32_t id)
{
	// Lock first: a reaper must never see the new link unheld.
	flock(fd, LOCK_SH);
	root_dir root;
	if (root.error())
		return;
	mkdirat(root.fd(), table_name(t), 0700);
	table_dir dir(root, t);
	if (dir.fd >= 0)
		file_link(fd, dir.fd, std::to_string(id));
}

void id_hold(int fd) { flock(fd, LOCK_SH); }

bool id_reap(id_table t, uint32_t id)
{
	root_dir root;
	return reap_in(root, t, id);
}

long id_get_next(id_table t, uapi::id_attr &attr)
{
	root_dir root;
	int dir_fd = root.open(table_name(t), O_RDONLY | O_DIRECTORY);
	DIR *d = dir_fd < 0 ? nullptr : fdopendir(dir_fd);
	if (!d) {
		if (dir_fd >= 0)
			close(dir_fd);
		return -ENOENT;
	}
	// Candidates in id order; the smallest live one wins.
	std::vector<uint32_t> ids;
	while (dirent *e = readdir(d))
		if (uint32_t id = entry_id(e->d_name); id > attr.start_id)
			ids.push_back(id);
	closedir(d);
	std::sort(ids.begin(), ids.end());
	for (uint32_t id : ids) {
		if (reap_in(root, t, id))
			continue;
		attr.next_id = id;
		return 0;
	}
	return -ENOENT;
}

int id_open(id_table t, uint32_t id, int mode)
{
	if (id == 0 || id >= INT_MAX)
		return -ENOENT;
	root_dir root;
	return open_held(root, t, id, mode);
}

void btf_ref_by_map(int btf_fd, uint32_t btf_id, uint32_t map_id)
{
	root_dir root;
	table_dir dir(root, id_table::btf);
	if (dir.fd >= 0)
		file_link(btf_fd, dir.fd, btf_ref_name(btf_id, map_id));
}

void map_id_publish(int fd, uint32_t id) { id_publish(id_table::map, fd, id); }

bool map_id_reap(uint32_t id) { return id_reap(id_table::map, id); }

long map_get_next_id(uapi::id_attr &attr, bool bad_tail)
{
	if (bad_tail || attr.start_id >= INT_MAX)
		return -EINVAL;
	return id_get_next(id_table::map, attr);
}

long map_get_fd_by_id(const uapi::id_attr &attr, bool bad_tail)
{
	constexpr uint32_t mask = uapi::BPF_F_RDONLY | uapi::BPF_F_WRONLY;
	if (bad_tail || (attr.open_flags & ~mask))
		return -EINVAL;
	if ((attr.open_flags & mask) == mask)
		return -EINVAL;
	int fd = id_open(id_table::map, attr.map_id, bpf_file_mode(attr.open_flags));
	if (fd < 0)
		return fd;
	rcu_guard g;
	int err;
	if (!map_from_fd(fd, &err)) {
		close(fd);
		// EINVAL: a header that does not validate; EPERM: another PID namespace's map
		return err == -EINVAL || err == -EPERM ? err : -ENOENT;
	}
	return fd;
}

} // namespace bpfmap
