// The dispatcher's internal entry: bpfmap_bpf() without errno, returning -errno.
#pragma once

#include <cstddef>
#include <string>

namespace bpfmap {

long sys_bpf(int cmd, void *attr, unsigned int size);

// Whether fd refers to a bpfmap map (of this or another process).
bool fd_is_map(int fd);

// Whether fd refers to a bpfmap map or BTF object; errno is left as it was.
bool fd_is_bpf_object(int fd);

// The map's lines of /proc/<pid>/fdinfo/<fd>, as the kernel's bpf_map_show_fdinfo() prints
// them; -EBADF or -EINVAL when fd is not a map fd.
int map_show_fdinfo(int fd, std::string *out);

} // namespace bpfmap
