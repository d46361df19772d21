// The libc functions libbpfmap.so replaces for the whole process, and why each must be.
//
// A kernel map fd is an anonymous inode the kernel knows about; a bpfmap map fd is a file
// descriptor of the map's region, and the kernel does not know it is a map. Where a libc
// call on such an fd must behave as it does on a kernel map fd, the library defines the
// function itself, under BPFMAP_INTERPOSE (exported, so the dynamic linker binds every
// caller in the process to it), does the map's part and passes everything else to the
// kernel:
//
//   close, close_range, closefrom,  fdhooks.cc    the process-local fd cache (objtab.cc),
//   dup2, dup3                                    mappings and epoll watches of an fd must
//                                                 go when the fd is closed or replaced
//   mmap, mmap64, munmap, mremap,   map_mmap.cc   the kernel's bpf_map_mmap() checks, and
//   mprotect                                      the count of writable mappings that makes
//                                                 MAP_FREEZE fail with EBUSY
//   epoll_ctl, epoll_wait,          ring_epoll.cc epoll refuses a regular file (EPERM); a
//   epoll_pwait                                   ring buffer's fd must be pollable
//
// The preload library (src/preload/) replaces more (syscall, and the bpffs path calls)
// under the same macro, for programs that never link bpfmap.
#pragma once

#include <cstddef>
#include <sys/types.h>

#define BPFMAP_INTERPOSE __attribute__((visibility("default")))

namespace bpfmap {

// fds first..last were closed or replaced: a freeze hold's own description among them (a
// blanket close took it) is forgotten, not closed again (map_mmap.cc).
void map_mmap_fds_closed(int first, int last);

// fds first..last were closed: the epoll watches of rings they carried go (ring_epoll.cc).
void ring_epoll_fds_closed(int first, int last);

} // namespace bpfmap
