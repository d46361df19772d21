// The dispatcher's internal entry: bpfmap_bpf() without errno, returning -errno.
#pragma once

#include <cstddef>
#include <string>

namespace bpfmap {

long sys_bpf(int cmd, void *attr, unsigned int size);

// The checks the kernel's mmap() makes of a map fd (bpf_map_mmap() and the map's own
// map_mmap), for an fd this process has cached as a map fd: 0 to go ahead, or -errno.
int map_mmap_check(int fd, size_t len, int prot, int flags, long off);

// Whether fd refers to a bpfmap map (of this or another process).
bool fd_is_map(int fd);

// Whether fd refers to a bpfmap map or BTF object; errno is left as it was.
bool fd_is_bpf_object(int fd);

// The map's lines of /proc/<pid>/fdinfo/<fd>, as the kernel's bpf_map_show_fdinfo() prints
// them; -EBADF or -EINVAL when fd is not a map fd.
int map_show_fdinfo(int fd, std::string *out);

} // namespace bpfmap
