// The object table: which fd is which map in this process, and the handles behind them.
// The analogue of the kernel's fd table plus the refcounting of struct bpf_map.
//
// Contract:
// - map_from_fd() is the hot path: two loads, no lock, no syscall. Call it inside
//   rcu_read_lock(); the handle stays valid until rcu_read_unlock() without a reference.
// - Every fd-table entry and every handle given out by map_get() holds one reference.
//   The last map_put() unmaps the region after a grace period.
// - An fd not seen before (inherited, dup()ed, received over a socket) is looked up once
//   with fstat and the region header, then cached. close(), close_range(), closefrom(),
//   dup2() and dup3() are interposed by the library so a cached entry never outlives its
//   fd (a raw syscall(SYS_close) bypasses this and is not supported for map fds).
#pragma once

#include <atomic>
#include <cstdint>
#include <fcntl.h>

#include "core/map.h"

namespace bpfmap {

// What an fd's open mode withholds (the kernel's missing FMODE_CAN_READ / FMODE_CAN_WRITE).
inline constexpr unsigned FD_NO_READ = 1;
inline constexpr unsigned FD_NO_WRITE = 2;

// What an fd of access mode O_RDONLY, O_WRONLY or O_RDWR withholds.
inline unsigned access_mode_denied(int accmode)
{
	return accmode == O_RDONLY ? FD_NO_WRITE : accmode == O_WRONLY ? FD_NO_READ : 0;
}

// The open mode BPF_F_RDONLY / BPF_F_WRONLY ask of a new map fd (the kernel's
// bpf_get_file_flag(); callers refuse both at once beforehand).
inline int bpf_file_mode(uint32_t flags)
{
	return (flags & uapi::BPF_F_RDONLY)   ? O_RDONLY
	       : (flags & uapi::BPF_F_WRONLY) ? O_WRONLY
					      : O_RDWR;
}

bool fd_is_open(int fd);

// bpfmap has no BPF tokens: a token fd that is open is not one (EINVAL), a closed one is
// EBADF, as the kernel's bpf_token_get_from_fd() answers.
inline int no_token_errno(int fd) { return fd_is_open(fd) ? -EINVAL : -EBADF; }

// The fd cache: fd -> handle, two levels so that readers never see a table being
// reallocated. A slot holds the handle with the fd's FD_NO_* bits in its low bits (handles
// are at least 8-byte aligned), so the hot path reads both with one load. Defined here so
// that map_from_fd() inlines its common case; written only by objtab.cc.
namespace fd_cache {
inline constexpr int FD_CHUNK_BITS = 10;
inline constexpr int FD_CHUNK = 1 << FD_CHUNK_BITS;
inline constexpr int FD_CHUNKS = 1024;
inline constexpr int FD_MAX = FD_CHUNK * FD_CHUNKS;
inline constexpr uintptr_t FD_MODE_BITS = FD_NO_READ | FD_NO_WRITE;

struct fd_chunk {
	std::atomic<uintptr_t> slot[FD_CHUNK];
};
extern std::atomic<fd_chunk *> fd_chunks[FD_CHUNKS];

inline bpf_map *slot_map(uintptr_t v) { return reinterpret_cast<bpf_map *>(v & ~FD_MODE_BITS); }

// fd's slot, or nullptr when fd is beyond the cache or, unless create is set, its chunk
// was never made.
inline std::atomic<uintptr_t> *fd_slot(int fd, bool create)
{
	if (fd < 0 || fd >= FD_MAX)
		return nullptr;
	std::atomic<fd_chunk *> &c = fd_chunks[fd >> FD_CHUNK_BITS];
	fd_chunk *chunk = c.load(std::memory_order_acquire);
	if (!chunk) {
		if (!create)
			return nullptr;
		auto *fresh = new fd_chunk{};
		if (!c.compare_exchange_strong(chunk, fresh, std::memory_order_acq_rel))
			delete fresh;
		else
			chunk = fresh;
	}
	return &chunk->slot[fd & (FD_CHUNK - 1)];
}
} // namespace fd_cache

// The map behind fd if this process has it in its cache, or nullptr; never a syscall.
// Inside rcu_read_lock(), as map_from_fd().
inline bpf_map *map_from_fd_cached(int fd, unsigned *denied)
{
	std::atomic<uintptr_t> *slot = fd_cache::fd_slot(fd, false);
	uintptr_t v = slot ? slot->load(std::memory_order_acquire) : 0;
	if (!v)
		return nullptr;
	*denied = v & fd_cache::FD_MODE_BITS;
	return fd_cache::slot_map(v);
}

// map_from_fd() for an fd not in the cache: looks it up and caches it.
bpf_map *map_from_fd_uncached(int fd, int *err, unsigned *denied);

// The map behind fd, or nullptr with *err = -EBADF (no such fd) or -EINVAL (not a map).
// *denied receives the FD_NO_* bits of the fd's open mode.
inline bpf_map *map_from_fd(int fd, int *err, unsigned *denied)
{
	if (bpf_map *map = map_from_fd_cached(fd, denied))
		return map;
	return map_from_fd_uncached(fd, err, denied);
}
bpf_map *map_from_fd(int fd, int *err);

// Lay out a fresh region whose header is filled (all but magic), wrap it in a handle and
// install it at fd, whose open mode withholds `denied`.
int map_install_new(const bpf_map_ops *ops, void *base, size_t size, int fd, unsigned denied);

// Take a reference; false if the map's last reference is already gone.
bool map_get(bpf_map *map);
void map_put(bpf_map *map);

// Drop the cached entries of fds that were closed or replaced.
void fd_forget(int fd);
void fds_forget(int first, int last);

} // namespace bpfmap
