// What the file system shows of map and BTF fds and of bpffs, under the preload library.
//
// A bpfmap map fd is a tmpfs file underneath; tools look at it the way they look at a
// kernel map fd, and bpffs paths name our pin root. So, for map fds only:
//   readlink /proc/self/fd/<fd>   -> "anon_inode:bpf-map" or "anon_inode:btf" (bpftool
//                                    tells object types so)
//   open /proc/self/fdinfo/<fd>   -> the kernel's fdinfo text for a map (bpftool reads
//                                    "frozen" and "memlock" there)
//   fstat(fd)                     -> the kernel's anon inode, as for any bpf object fd
// and for absolute paths at or under /sys/fs/bpf, which stand for the pin root:
//   statfs                        -> the pin root's file system, with bpffs's magic
//   stat, lstat, access, mkdir, rmdir, unlink, unlinkat, opendir -> the same call on the
//                                    pin root
//   nftw                          -> a walk of the pin root that reports /sys/fs/bpf paths
//                                    and hides bpfmap's own bookkeeping (bpftool -f finds
//                                    pinned paths so)
// Everything else goes on unchanged.
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <ftw.h>
#include <memory>
#include <string>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bpfmap/bpfmap.h"
#include "core/pin_root.h"
#include "core/region.h"
#include "interpose/interpose.h"
#include "syscall/btf_obj.h"
#include "syscall/pin.h"
#include "syscall/syscall.h"

namespace {

constexpr long BPF_FS_MAGIC = 0xcafe4a11;

template <typename F> F real(const char *name)
{
	return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

// Parse "/proc/{self,thread-self,<our pid>}/<dir>/<fd>" exactly; the fd, or -1.
int proc_fd_path(const char *path, const char *dir)
{
	if (!path || strncmp(path, "/proc/", 6) != 0)
		return -1;
	const char *p = path + 6;
	char *end;
	if (strncmp(p, "self/", 5) == 0) {
		p += 5;
	} else if (strncmp(p, "thread-self/", 12) == 0) {
		p += 12;
	} else {
		long pid = strtol(p, &end, 10);
		if (end == p || *end != '/' || pid != getpid())
			return -1;
		p = end + 1;
	}
	size_t n = strlen(dir);
	if (strncmp(p, dir, n) != 0 || p[n] != '/')
		return -1;
	p += n + 1;
	if (*p < '0' || *p > '9')
		return -1;
	long fd = strtol(p, &end, 10);
	return *end || fd > INT32_MAX ? -1 : static_cast<int>(fd);
}

// What the kernel shows for every anon-inode fd (bpf objects, eventfds, ...): one inode.
struct anon_inode {
	struct stat st;
	int mnt_id;
};

const anon_inode &anon()
{
	static const anon_inode a = [] {
		anon_inode r{};
		int fd = eventfd(0, EFD_CLOEXEC);
		if (fd < 0)
			return r;
		bpfmap::file_stat(fd, &r.st);
		std::string path = "/proc/self/fdinfo/" + std::to_string(fd);
		int info = real<int (*)(int, const char *, int, ...)>("openat")(
			AT_FDCWD, path.c_str(), O_RDONLY | O_CLOEXEC);
		if (info >= 0) {
			char buf[256];
			ssize_t n = read(info, buf, sizeof(buf) - 1);
			buf[n > 0 ? n : 0] = 0;
			if (const char *m = strstr(buf, "mnt_id:"))
				r.mnt_id = atoi(m + 7);
			close(info);
		}
		close(fd);
		return r;
	}();
	return a;
}

// A readable file holding the kernel's fdinfo text for map or BTF fd `fd`; -1 with errno
// if it is neither.
int fdinfo_file(int fd, int oflags)
{
	std::string map_lines;
	if (uint32_t id = bpfmap::btf_fd_id(fd)) {
		map_lines = "btf_id:\t" + std::to_string(id) + "\n";
	} else if (int err = bpfmap::map_show_fdinfo(fd, &map_lines)) {
		errno = -err;
		return -1;
	}
	int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);
	unsigned flags = (fl & (O_ACCMODE | O_NONBLOCK)) | ((fdfl & FD_CLOEXEC) ? O_CLOEXEC : 0);
	char head[128];
	snprintf(head, sizeof(head), "pos:\t0\nflags:\t0%o\nmnt_id:\t%d\nino:\t%lu\n", flags,
		 anon().mnt_id, static_cast<unsigned long>(anon().st.st_ino));
	std::string text = head + map_lines;
	int out = memfd_create("fdinfo", (oflags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
	if (out < 0)
		return -1;
	if (write(out, text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
	    lseek(out, 0, SEEK_SET) != 0) {
		close(out);
		errno = EIO;
		return -1;
	}
	return out;
}

// The fdinfo stand-in if path names a map or BTF fd's fdinfo; -2 if it does not.
int open_fdinfo(const char *path, int oflags)
{
	int fd = proc_fd_path(path, "fdinfo");
	if (fd < 0 || !bpfmap::fd_is_bpf_object(fd))
		return -2;
	return fdinfo_file(fd, oflags);
}

// What readlink says of /proc/self/fd/<fd> for our fds, or null for any other path.
const char *link_target(const char *path)
{
	int fd = proc_fd_path(path, "fd");
	if (fd < 0)
		return nullptr;
	if (bpfmap::fd_is_map(fd))
		return "anon_inode:bpf-map";
	return bpfmap::btf_fd_id(fd) ? "anon_inode:btf" : nullptr;
}

ssize_t put_link(const char *target, char *buf, size_t n)
{
	size_t len = std::min(n, strlen(target));
	memcpy(buf, target, len);
	return static_cast<ssize_t>(len);
}

void stat_as_anon(struct stat *st) { *st = anon().st; }

// What an absolute bpffs path stands for: the same place below the pin root, reached
// through the checked, open root (core/pin_root.h), its directory opened without
// following a symlink, so that only the last component is looked up by the call itself;
// any other path as it is. Where the pin root is refused, or the directory cannot be
// reached so, a bpffs path fails with that errno.
struct bpffs_path {
	std::string file;
	const char *path;
	bool in_bpffs;
	std::unique_ptr<bpfmap::root_dir> root;
	int dir = -1;
	int err = 0;
	explicit bpffs_path(const char *p)
		: path(p)
		, in_bpffs(bpfmap::bpffs_rel(p, &file))
	{
		if (!in_bpffs)
			return;
		root = std::make_unique<bpfmap::root_dir>();
		std::string base;
		if ((err = root->error()) || (dir = root->open_parent(file, &base)) < 0) {
			err = err ? err : dir == -EXDEV || dir == -ELOOP ? -EACCES : dir;
			return;
		}
		if (base == "..") // the root's own parent, or a name that walks back up
			err = -EACCES;
		file = base.empty() ? root->path("")
				    : "/proc/self/fd/" + std::to_string(dir) + "/" + base;
		path = file.c_str();
	}
	~bpffs_path()
	{
		if (dir >= 0)
			close(dir);
	}
	// Whether the call must fail (errno set).
	bool refused() const
	{
		if (!err)
			return false;
		errno = -err;
		return true;
	}
};

// One nftw() of the pin root standing for a bpffs path: the caller's callback, and how to
// turn a pin-root path back into the path the caller asked about.
using nftw_fn = int (*)(const char *, const struct stat *, int, struct FTW *);
struct bpffs_walk {
	nftw_fn fn;
	size_t root_len;   // of the pin-root path walked
	std::string shown; // the bpffs path it stands for
};
thread_local bpffs_walk *current_walk;

int bpffs_walk_cb(const char *fpath, const struct stat *st, int type, struct FTW *ftw)
{
	bpffs_walk *w = current_walk;
	const char *rel = fpath + w->root_len;
	if (strstr(rel, "/.bpfmap-")) // ids, BTF references: not pins
		return 0;
	std::string shown = w->shown + rel;
	struct FTW f = *ftw;
	f.base = static_cast<int>(ftw->base - w->root_len + w->shown.size());
	return w->fn(shown.c_str(), st, type, &f);
}

mode_t open_mode(int flags, va_list ap)
{
	return (flags & (O_CREAT | O_TMPFILE)) ? static_cast<mode_t>(va_arg(ap, int)) : 0;
}

} // namespace

extern "C" {

BPFMAP_INTERPOSE ssize_t readlink(const char *path, char *buf, size_t n)
{
	if (const char *target = link_target(path))
		return put_link(target, buf, n);
	return real<ssize_t (*)(const char *, char *, size_t)>("readlink")(path, buf, n);
}

BPFMAP_INTERPOSE ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t n)
{
	if (const char *target = link_target(path))
		return put_link(target, buf, n);
	return real<ssize_t (*)(int, const char *, char *, size_t)>("readlinkat")(dirfd, path, buf,
										  n);
}

// open() and open64() are openat() at the current directory, as glibc's own are.
BPFMAP_INTERPOSE int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	int fd = open_fdinfo(path, flags);
	if (fd != -2)
		return fd;
	return real<int (*)(int, const char *, int, ...)>("openat")(dirfd, path, flags, mode);
}

BPFMAP_INTERPOSE int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	return openat(dirfd, path, flags, mode);
}

BPFMAP_INTERPOSE int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	return openat(AT_FDCWD, path, flags, mode);
}

BPFMAP_INTERPOSE int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	return openat(AT_FDCWD, path, flags, mode);
}

// The entry points _FORTIFY_SOURCE builds call for open() without a mode.
BPFMAP_INTERPOSE int __open_2(const char *path, int flags) { return open(path, flags); }
BPFMAP_INTERPOSE int __open64_2(const char *path, int flags) { return open(path, flags); }
BPFMAP_INTERPOSE int __openat_2(int dirfd, const char *path, int flags)
{
	return openat(dirfd, path, flags);
}
BPFMAP_INTERPOSE int __openat64_2(int dirfd, const char *path, int flags)
{
	return openat(dirfd, path, flags);
}

BPFMAP_INTERPOSE FILE *fopen(const char *path, const char *mode)
{
	int fd = open_fdinfo(path, strchr(mode, 'e') ? O_CLOEXEC : 0);
	if (fd == -2)
		return real<FILE *(*)(const char *, const char *)>("fopen")(path, mode);
	if (fd < 0)
		return nullptr;
	FILE *f = fdopen(fd, "r");
	if (!f)
		close(fd);
	return f;
}

BPFMAP_INTERPOSE FILE *fopen64(const char *path, const char *mode) { return fopen(path, mode); }

BPFMAP_INTERPOSE int fstat(int fd, struct stat *st)
{
	int ret = bpfmap::file_stat(fd, st);
	if (ret == 0 && bpfmap::fd_is_bpf_object(fd))
		stat_as_anon(st);
	return ret;
}

BPFMAP_INTERPOSE int fstat64(int fd, struct stat64 *st)
{
	static_assert(sizeof(struct stat64) == sizeof(struct stat));
	return fstat(fd, reinterpret_cast<struct stat *>(st));
}

BPFMAP_INTERPOSE int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	if ((flags & AT_EMPTY_PATH) && !*path)
		return fstat(dirfd, st);
	bpffs_path p(path);
	if (p.refused())
		return -1;
	return real<int (*)(int, const char *, struct stat *, int)>("fstatat")(dirfd, p.path, st,
									       flags);
}

BPFMAP_INTERPOSE int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
	return fstatat(dirfd, path, reinterpret_cast<struct stat *>(st), flags);
}

BPFMAP_INTERPOSE int stat(const char *path, struct stat *st)
{
	bpffs_path p(path);
	if (p.refused())
		return -1;
	return real<int (*)(const char *, struct stat *)>("stat")(p.path, st);
}

BPFMAP_INTERPOSE int stat64(const char *path, struct stat64 *st)
{
	return stat(path, reinterpret_cast<struct stat *>(st));
}

BPFMAP_INTERPOSE int lstat(const char *path, struct stat *st)
{
	bpffs_path p(path);
	if (p.refused())
		return -1;
	return real<int (*)(const char *, struct stat *)>("lstat")(p.path, st);
}

BPFMAP_INTERPOSE int lstat64(const char *path, struct stat64 *st)
{
	return lstat(path, reinterpret_cast<struct stat *>(st));
}

BPFMAP_INTERPOSE int statfs(const char *path, struct statfs *buf)
{
	bpffs_path p(path);
	if (p.refused())
		return -1;
	int ret = real<int (*)(const char *, struct statfs *)>("statfs")(p.path, buf);
	if (ret == 0 && p.in_bpffs)
		buf->f_type = BPF_FS_MAGIC;
	return ret;
}

BPFMAP_INTERPOSE int statfs64(const char *path, struct statfs64 *buf)
{
	static_assert(sizeof(struct statfs64) == sizeof(struct statfs));
	return statfs(path, reinterpret_cast<struct statfs *>(buf));
}

BPFMAP_INTERPOSE int access(const char *path, int mode)
{
	bpffs_path p(path);
	if (p.refused())
		return -1;
	return real<int (*)(const char *, int)>("access")(p.path, mode);
}

BPFMAP_INTERPOSE int mkdir(const char *path, mode_t mode)
{
	bpffs_path p(path);
	if (p.refused())
		return -1;
	return real<int (*)(const char *, mode_t)>("mkdir")(p.path, mode);
}

BPFMAP_INTERPOSE int rmdir(const char *path)
{
	bpffs_path p(path);
	if (p.refused())
		return -1;
	return real<int (*)(const char *)>("rmdir")(p.path);
}

BPFMAP_INTERPOSE int unlink(const char *path)
{
	bpffs_path p(path);
	if (p.refused())
		return -1;
	return real<int (*)(const char *)>("unlink")(p.path);
}

BPFMAP_INTERPOSE int unlinkat(int dirfd, const char *path, int flags)
{
	bpffs_path p(path);
	if (p.refused())
		return -1;
	return real<int (*)(int, const char *, int)>("unlinkat")(dirfd, p.path, flags);
}

BPFMAP_INTERPOSE DIR *opendir(const char *path)
{
	bpffs_path p(path);
	if (p.refused())
		return nullptr;
	return real<DIR *(*)(const char *)>("opendir")(p.path);
}

BPFMAP_INTERPOSE int nftw(const char *dir, nftw_fn fn, int nopenfd, int flags)
{
	auto real_nftw = real<int (*)(const char *, nftw_fn, int, int)>("nftw");
	// glibc declares dir nonnull; a caller that passes NULL anyway gets libc's own answer.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnonnull-compare"
	if (!dir)
		return real_nftw(dir, fn, nopenfd, flags);
#pragma GCC diagnostic pop
	// Without trailing slashes, so that the walked path and the shown one extend alike.
	std::string shown = dir;
	while (shown.size() > 1 && shown.back() == '/')
		shown.pop_back();
	bpffs_path p(shown.c_str());
	if (!p.in_bpffs)
		return real_nftw(dir, fn, nopenfd, flags);
	if (p.refused())
		return -1;
	bpffs_walk w{fn, strlen(p.path), shown};
	bpffs_walk *outer = current_walk; // a callback may walk again
	current_walk = &w;
	int ret = real_nftw(p.path, bpffs_walk_cb, nopenfd, flags);
	current_walk = outer;
	return ret;
}

BPFMAP_INTERPOSE int nftw64(const char *dir,
			    int (*fn)(const char *, const struct stat64 *, int, struct FTW *),
			    int nopenfd, int flags)
{
	static_assert(sizeof(struct stat64) == sizeof(struct stat));
	return nftw(dir, reinterpret_cast<nftw_fn>(fn), nopenfd, flags);
}

} // extern "C"
