// mmap() of a map fd as the kernel's bpf_map_mmap() treats it: the checks, and the holds
// that make MAP_FREEZE answer EBUSY while a writable mapping exists (syscall/freeze.h: one
// OFD read lock per process and map, on a description of its own).
//
// Each process tracks the address ranges of its own map mappings (munmap, mremap, mprotect
// and MAP_FIXED are interposed to keep the table true) to know when its last writable one
// is gone, and to refuse what the kernel's VM_MAYWRITE/VM_MAYEXEC clearing refuses.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <new>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <utility>
#include <vector>

#include "core/rcu.h"
#include "core/region.h"
#include "interpose/interpose.h"
#include "syscall/btf_obj.h"
#include "syscall/freeze.h"
#include "syscall/objtab.h"
#include "syscall/syscall.h"

namespace bpfmap {

namespace {

using uapi::ENOTSUPP;

using map_key = std::pair<dev_t, ino_t>;

struct mapping {
	uintptr_t start, end;
	map_key map;
	bool maywrite; // mapped writable: may become writable again after mprotect
};

std::mutex table_lock;
std::vector<mapping> mappings;
// Per map this process maps writable: the description that carries its read lock.
std::map<map_key, int> holds;
// Lets munmap() of memory that is not a map skip the lock.
std::atomic<bool> have_mappings{false};

const bool table_lock_atfork = [] {
	pthread_atfork([] { table_lock.lock(); }, [] { table_lock.unlock(); },
		       [] { new (&table_lock) std::mutex; });
	return true;
}();

void *raw_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return reinterpret_cast<void *>(syscall(SYS_mmap, addr, len, prot, flags, fd, off));
}

uintptr_t page_end(uintptr_t start, size_t len)
{
	return start + ((len + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1));
}

// Take this process's read lock on map, unless it holds it already. Called with
// table_lock held.
int hold_writable(int fd, const map_key &map)
{
	if (holds.count(map))
		return 0;
	int lfd = freeze_hold(fd);
	if (lfd < 0)
		return lfd;
	holds[map] = lfd;
	return 0;
}

// Drop the holds no remaining writable mapping needs. Called with table_lock held.
void release_unneeded_holds()
{
	for (auto it = holds.begin(); it != holds.end();) {
		bool needed = std::any_of(mappings.begin(), mappings.end(), [&](const mapping &m) {
			return m.maywrite && m.map == it->first;
		});
		if (needed) {
			++it;
			continue;
		}
		freeze_release(it->second);
		it = holds.erase(it);
	}
	have_mappings.store(!mappings.empty(), std::memory_order_relaxed);
}

// Forget [start, end): it was unmapped or mapped over. Called with table_lock held.
void forget_range(uintptr_t start, uintptr_t end)
{
	std::vector<mapping> kept;
	for (const mapping &m : mappings) {
		if (m.end <= start || m.start >= end) {
			kept.push_back(m);
			continue;
		}
		if (m.start < start)
			kept.push_back({m.start, start, m.map, m.maywrite});
		if (m.end > end)
			kept.push_back({end, m.end, m.map, m.maywrite});
	}
	mappings.swap(kept);
}

const mapping *find_overlap(uintptr_t start, uintptr_t end)
{
	for (const mapping &m : mappings)
		if (m.start < end && m.end > start)
			return &m;
	return nullptr;
}

// The checks of the kernel's do_mmap() and bpf_map_mmap(), in their order, for a map fd.
int check_map_mmap(bpf_map *map, unsigned denied, size_t len, int prot, int flags, off_t off)
{
	bool shared = (flags & MAP_TYPE) == MAP_SHARED || (flags & MAP_TYPE) == MAP_SHARED_VALIDATE;
	bool write = prot & PROT_WRITE;
	// The file's mode first, as do_mmap() checks it before the map sees the call.
	if ((denied & FD_NO_READ) || (shared && write && (denied & FD_NO_WRITE)))
		return -EACCES;
	if (prot & PROT_EXEC) // a map's anon inode lives on a noexec file system
		return -EPERM;
	const bpf_map_ops *ops = map->ops;
	if (!ops->map_mmapable && !ops->map_mmap)
		return -ENOTSUPP;
	// do_mmap() makes a shared mapping of a file not open for writing a non-shared one,
	// which the map then refuses.
	if (!shared || (denied & FD_NO_WRITE))
		return -EINVAL;
	if (write && map->frozen())
		return -EPERM;
	if (write && (map->map_flags & uapi::BPF_F_RDONLY_PROG))
		return -EACCES;
	if (ops->map_mmap_check)
		return off < 0 ? -EINVAL
			       : ops->map_mmap_check(map, write, len, static_cast<size_t>(off));
	if (!ops->map_mmapable(map))
		return -EINVAL;
	// Only the values may be mapped, not the header page behind them.
	size_t pages = (len + PAGE_SIZE - 1) / PAGE_SIZE;
	if (off < 0 || static_cast<size_t>(off) / PAGE_SIZE + pages >
			       (map->region_size - MAP_HEADER_SIZE) / PAGE_SIZE)
		return -EINVAL;
	return 0;
}

void *fail(int err)
{
	errno = -err;
	return MAP_FAILED;
}

// mmap() of a map fd that passed the checks: take the hold, map, record.
void *map_mmap_checked(bpf_map *map, void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	map_key key{map->dev, map->ino};
	bool write = prot & PROT_WRITE;
	std::lock_guard<std::mutex> g(table_lock);
	if (write) {
		if (int err = hold_writable(fd, key))
			return fail(err);
		if (map->frozen()) { // frozen before we held the lock
			release_unneeded_holds();
			return fail(-EPERM);
		}
	}
	void *p = map->ops->map_mmap ? map->ops->map_mmap(map, addr, len, prot, flags, fd, off)
				     : raw_mmap(addr, len, prot, flags, fd, off);
	if (p == MAP_FAILED) {
		int e = errno;
		release_unneeded_holds();
		errno = e;
		return p;
	}
	uintptr_t start = reinterpret_cast<uintptr_t>(p), end = page_end(start, len);
	forget_range(start, end); // anything recorded there was mapped over
	mappings.push_back({start, end, key, write});
	release_unneeded_holds();
	return p;
}

// The map behind an fd being mapped, or nullptr when it is not a map fd. Checks only files
// on the pin root's file system, so mmap() of any other file costs one fstat.
bpf_map *mmap_target(int fd, unsigned *denied)
{
	if (bpf_map *map = map_from_fd_cached(fd, denied))
		return map;
	struct stat st;
	if (file_stat(fd, &st) != 0 || !on_pin_root_fs(st))
		return nullptr;
	int err;
	return map_from_fd(fd, &err, denied);
}

// mmap(), munmap(), mprotect() and mremap() as a program calls them: map fds get the
// kernel's checks and their writable mappings are counted; any other memory passes straight
// to the kernel. -1 / MAP_FAILED with errno, as the libc calls.
void *map_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	int saved = errno;
	if (fd >= 0 && !(flags & MAP_ANONYMOUS) && len && !(off & (PAGE_SIZE - 1))) {
		rcu_guard g;
		unsigned denied;
		if (bpf_map *map = mmap_target(fd, &denied)) {
			errno = saved;
			if (int err = check_map_mmap(map, denied, len, prot, flags, off))
				return fail(err);
			return map_mmap_checked(map, addr, len, prot, flags, fd, off);
		}
		if (btf_fd_id(fd)) // a BTF object's file has no mmap
			return fail(-ENODEV);
	}
	errno = saved;
	void *p = raw_mmap(addr, len, prot, flags, fd, off);
	if (p != MAP_FAILED && have_mappings.load(std::memory_order_relaxed)) {
		// The kernel never hands out an address still in use, so a record there is stale
		// (a mapping went away behind our back) or was just mapped over with MAP_FIXED.
		int e = errno;
		std::lock_guard<std::mutex> g(table_lock);
		uintptr_t start = reinterpret_cast<uintptr_t>(p);
		forget_range(start, page_end(start, len));
		release_unneeded_holds();
		errno = e;
	}
	return p;
}

int map_munmap(void *addr, size_t len)
{
	if (!have_mappings.load(std::memory_order_relaxed))
		return static_cast<int>(syscall(SYS_munmap, addr, len));
	std::lock_guard<std::mutex> g(table_lock);
	long ret = syscall(SYS_munmap, addr, len);
	if (ret == 0) {
		int e = errno;
		uintptr_t start = reinterpret_cast<uintptr_t>(addr);
		forget_range(start, page_end(start, len));
		release_unneeded_holds();
		errno = e;
	}
	return static_cast<int>(ret);
}

int map_mprotect(void *addr, size_t len, int prot)
{
	if (have_mappings.load(std::memory_order_relaxed) && (prot & (PROT_WRITE | PROT_EXEC))) {
		std::lock_guard<std::mutex> g(table_lock);
		uintptr_t start = reinterpret_cast<uintptr_t>(addr), end = page_end(start, len);
		for (const mapping &m : mappings) {
			if (m.start >= end || m.end <= start)
				continue;
			// bpf_map_mmap() cleared VM_MAYEXEC, and VM_MAYWRITE on a read-only mapping.
			if ((prot & PROT_EXEC) || !m.maywrite) {
				errno = EACCES;
				return -1;
			}
		}
	}
	return static_cast<int>(syscall(SYS_mprotect, addr, len, prot));
}

void *map_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr)
{
	if (!have_mappings.load(std::memory_order_relaxed))
		return reinterpret_cast<void *>(
			syscall(SYS_mremap, old, old_len, new_len, flags, new_addr));
	std::lock_guard<std::mutex> g(table_lock);
	uintptr_t start = reinterpret_cast<uintptr_t>(old);
	const mapping *m = find_overlap(start, page_end(start, old_len ? old_len : 1));
	std::vector<mapping> moved;
	if (m) {
		// The kernel maps a map's pages with VM_DONTEXPAND: it cannot grow, and
		// MREMAP_DONTUNMAP refuses it.
		if (flags & MREMAP_DONTUNMAP)
			return fail(-EINVAL);
		if (page_end(0, new_len) > page_end(0, old_len))
			return fail(-EFAULT);
		for (const mapping &x : mappings)
			if (x.start < page_end(start, new_len) && x.end > start)
				moved.push_back(x);
	}
	void *p = reinterpret_cast<void *>(
		syscall(SYS_mremap, old, old_len, new_len, flags, new_addr));
	if (p == MAP_FAILED)
		return p;
	int e = errno;
	uintptr_t to = reinterpret_cast<uintptr_t>(p);
	forget_range(start, page_end(start, old_len));
	forget_range(to, page_end(to, new_len)); // MREMAP_FIXED maps over what was there
	uintptr_t keep_end = page_end(start, new_len);
	for (mapping x : moved) {
		x.start = std::max(x.start, start) - start + to;
		x.end = std::min(x.end, keep_end) - start + to;
		mappings.push_back(x);
	}
	release_unneeded_holds();
	errno = e;
	return p;
}

} // namespace

void map_mmap_fds_closed(int first, int last)
{
	if (!have_mappings.load(std::memory_order_relaxed))
		return;
	std::lock_guard<std::mutex> g(table_lock);
	// A blanket close (closefrom() in a forked child, say) took our description: forget
	// it rather than close whatever gets that number next. The lock now lasts as long as
	// other processes sharing the description keep it.
	for (auto it = holds.begin(); it != holds.end();)
		it = it->second >= first && it->second <= last ? holds.erase(it) : std::next(it);
}

} // namespace bpfmap

extern "C" {

BPFMAP_INTERPOSE void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return bpfmap::map_mmap(addr, len, prot, flags, fd, off);
}

BPFMAP_INTERPOSE void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return bpfmap::map_mmap(addr, len, prot, flags, fd, off);
}

BPFMAP_INTERPOSE int munmap(void *addr, size_t len) { return bpfmap::map_munmap(addr, len); }

BPFMAP_INTERPOSE int mprotect(void *addr, size_t len, int prot)
{
	return bpfmap::map_mprotect(addr, len, prot);
}

BPFMAP_INTERPOSE void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	void *new_addr = nullptr;
	if (flags & MREMAP_FIXED) {
		va_list ap;
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	return bpfmap::map_mremap(old, old_len, new_len, flags, new_addr);
}

} // extern "C"
