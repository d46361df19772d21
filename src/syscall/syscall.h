// The dispatcher's internal entry: bpfmap_bpf() without errno, returning -errno.
#pragma once

#include <cstddef>
#include <string>
#include <sys/types.h>

namespace bpfmap {

long sys_bpf(int cmd, void *attr, unsigned int size);

// mmap(), munmap(), mremap() and mprotect() as a program calls them (see map_mmap.cc): map
// fds get the kernel's checks and their writable mappings are counted; any other memory
// passes straight to the kernel. -1 / MAP_FAILED with errno, as the libc calls.
void *map_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int map_munmap(void *addr, size_t len);
void *map_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr);
int map_mprotect(void *addr, size_t len, int prot);
// fds first..last were closed or replaced.
void map_mmap_fds_closed(int first, int last);

// fds first..last were closed: the epoll watches of rings they carried go (ring_epoll.cc).
void ring_epoll_fds_closed(int first, int last);

// Set the map's frozen flag unless a writable mapping of it exists in any process
// (-EBUSY) or it is frozen already (-EPERM).
struct bpf_map;
int map_freeze_exclusive(int fd, bpf_map *map);

// Whether fd refers to a bpfmap map (of this or another process).
bool fd_is_map(int fd);

// Whether fd refers to a bpfmap map or BTF object; errno is left as it was.
bool fd_is_bpf_object(int fd);

// The map's lines of /proc/<pid>/fdinfo/<fd>, as the kernel's bpf_map_show_fdinfo() prints
// them; -EBADF or -EINVAL when fd is not a map fd.
int map_show_fdinfo(int fd, std::string *out);

} // namespace bpfmap
