// The dispatcher's internal entry: bpfmap_bpf() without errno, returning -errno.
#pragma once

#include <cstddef>

namespace bpfmap {

long sys_bpf(int cmd, void *attr, unsigned int size);

// The checks the kernel's mmap() makes of a map fd (bpf_map_mmap() and the map's own
// map_mmap), for an fd this process has cached as a map fd: 0 to go ahead, or -errno.
int map_mmap_check(int fd, size_t len, int prot, int flags, long off);

} // namespace bpfmap
