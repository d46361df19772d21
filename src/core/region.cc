#include "core/region.h"

#include "core/pin_root.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace bpfmap {

namespace {

// Shared by every process using the pin root: the last id handed out.
struct id_counter {
	std::atomic<uint32_t> last_id; // maps
	std::atomic<uint32_t>
		last_btf_id; // BTF objects: an id space of their own, as in the kernel
};

id_counter *map_id_counter()
{
	static id_counter *counter = []() -> id_counter * {
		int fd = root_dir().open(".bpfmap-ids", O_RDWR | O_CREAT, 0600);
		struct stat st;
		if (fd < 0)
			return nullptr;
		if (file_stat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
			close(fd);
			return nullptr;
		}
		// Every process extends the file to the same size; the first writer's zeroes stand.
		if (ftruncate(fd, PAGE_SIZE) != 0) {
			close(fd);
			return nullptr;
		}
		void *p = mmap(nullptr, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		close(fd);
		return p == MAP_FAILED ? nullptr : static_cast<id_counter *>(p);
	}();
	return counter;
}

uint32_t next_id(std::atomic<uint32_t> id_counter::*which)
{
	static id_counter local{};
	id_counter *c = map_id_counter();
	std::atomic<uint32_t> &ctr = c ? c->*which : local.*which;
	uint32_t id;
	do
		id = ctr.fetch_add(1, std::memory_order_relaxed) + 1;
	while (id == 0 || id > INT32_MAX);
	return id;
}

} // namespace

uint32_t next_map_id() { return next_id(&id_counter::last_id); }
uint32_t next_btf_id() { return next_id(&id_counter::last_btf_id); }

void pid_ns_id(uint64_t *dev, uint64_t *ino)
{
	// Asked each time: a process forked into a new namespace inherits any cache.
	struct stat st;
	bool known = stat("/proc/self/ns/pid", &st) == 0;
	*dev = known ? st.st_dev : 0;
	*ino = known ? st.st_ino : 0;
}

int region_create(size_t data_size, bool prealloc, void **base)
{
	size_t size = data_size + MAP_HEADER_SIZE;
	int fd = pin_root_tmpfile();
	if (fd < 0)
		fd = memfd_create("bpfmap", MFD_CLOEXEC); // no pinning then, but maps still work
	if (fd < 0)
		return -errno;
	int err = 0;
	if (ftruncate(fd, static_cast<off_t>(size)) != 0)
		err = errno == EFBIG || errno == EINVAL ? -ENOMEM : -errno;
	else if (prealloc && fallocate(fd, 0, 0, static_cast<off_t>(size)) != 0)
		err = errno == ENOSPC || errno == EFBIG ? -ENOMEM : -errno;
	if (!err)
		err = region_map(fd, size, base);
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

int region_map(int fd, size_t size, void **base)
{
	// The raw syscall: the interposed mmap() would take this for a program's map mmap.
	void *p = reinterpret_cast<void *>(
		syscall(SYS_mmap, nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t{0}));
	if (p == MAP_FAILED)
		return errno == EACCES ? -EPERM : -ENOMEM;
	*base = p;
	return 0;
}

int region_read_header(int fd, map_header *hdr, size_t *size, dev_t *dev, ino_t *ino)
{
	struct stat st;
	if (file_stat(fd, &st) != 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || st.st_size < static_cast<off_t>(MAP_HEADER_SIZE) ||
	    st.st_size % PAGE_SIZE != 0)
		return -EINVAL;
	off_t off = st.st_size - static_cast<off_t>(MAP_HEADER_SIZE);
	if (pread(fd, hdr, sizeof(*hdr), off) != static_cast<ssize_t>(sizeof(*hdr)))
		return -EINVAL;
	if (hdr->magic.load(std::memory_order_relaxed) != MAP_MAGIC ||
	    hdr->data_size + MAP_HEADER_SIZE != static_cast<uint64_t>(st.st_size))
		return -EINVAL;
	*size = static_cast<size_t>(st.st_size);
	*dev = st.st_dev;
	*ino = st.st_ino;
	return 0;
}

void region_unmap(void *base, size_t size) { syscall(SYS_munmap, base, size); }

int file_stat(int fd, struct stat *st)
{
	return static_cast<int>(syscall(SYS_newfstatat, fd, "", st, AT_EMPTY_PATH));
}

bool on_pin_root_fs(const struct stat &st)
{
	static const dev_t root_dev = [] {
		root_dir root;
		struct stat r {};
		return !root.error() && file_stat(root.fd(), &r) == 0 ? r.st_dev : dev_t{};
	}();
	return S_ISREG(st.st_mode) && st.st_dev == root_dev;
}

int file_link(int fd, int dir_fd, const std::string &name)
{
	std::string src = "/proc/self/fd/" + std::to_string(fd);
	if (linkat(AT_FDCWD, src.c_str(), dir_fd, name.c_str(), AT_SYMLINK_FOLLOW) != 0)
		return -errno;
	return 0;
}

int region_reopen(int fd, int mode)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -EBADF;
	if ((fl & O_ACCMODE) == mode)
		return fd;
	// Only regular files: opening a device or a FIFO anew could have effects of its own.
	struct stat st;
	if (file_stat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		return -EINVAL;
	return file_reopen(fd, mode);
}

int file_reopen(int fd, int mode)
{
	std::string path = "/proc/self/fd/" + std::to_string(fd);
	int nfd = open(path.c_str(), mode | O_CLOEXEC);
	return nfd < 0 ? -errno : nfd;
}

} // namespace bpfmap
