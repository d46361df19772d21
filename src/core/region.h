// The shared-memory region behind a map: a file on tmpfs (by default the pin root under
// /dev/shm), created unlinked with O_TMPFILE so that it lives only while an fd, a mapping
// or a pin (a hard link made by OBJ_PIN) holds it, like a kernel map.
#pragma once

#include <string>
#include <sys/stat.h>

#include "core/map.h"

namespace bpfmap {

// Create a region file of data_size + one header page and map it. prealloc commits the
// memory now (ENOMEM up front, as the kernel's prealloc does). Returns the fd or -errno;
// *base receives the mapping.
int region_create(size_t data_size, bool prealloc, void **base);

// Map the region behind an fd that was checked to be one of ours. Returns 0 or -errno.
int region_map(int fd, size_t size, void **base);

// Read the header of whatever file fd refers to; -EINVAL if it is not a map region.
int region_read_header(int fd, map_header *hdr, size_t *size, dev_t *dev, ino_t *ino);

// Unmapped with the raw syscall: the library's own mappings are not map mmaps a program
// made, and the interposed munmap() must not see them.
void region_unmap(void *base, size_t size);

// The region file behind fd opened anew with access mode `mode` (O_RDONLY, O_WRONLY or
// O_RDWR), close-on-exec; fd itself when it already has that mode. -EINVAL when fd is
// not a regular file, -errno when it cannot be reopened.
int region_reopen(int fd, int mode);

// The file behind fd opened anew, always a description of its own (which region_reopen()
// reuses when the mode already fits): -errno when it cannot be reopened.
int file_reopen(int fd, int mode);

// fstat() of fd straight from the kernel. The preload library interposes fstat() to show
// a map fd as the kernel's anon inode, so the library's own code, which needs the region
// file itself, asks through this.
int file_stat(int fd, struct stat *st);

// Whether st is a regular file on the pin root's file system, as every map and BTF object
// file is (pins are hard links there): most other fds are told apart without reading.
bool on_pin_root_fs(const struct stat &st);

// Give the file behind fd one more name, name in directory dir_fd (a hard link through
// /proc, so an unlinked O_TMPFILE file can be named). 0 or -errno.
int file_link(int fd, int dir_fd, const std::string &name);

// The caller's PID namespace as (nsfs device, inode); both 0 where /proc cannot tell.
void pid_ns_id(uint64_t *dev, uint64_t *ino);

// A machine-wide (pin-root-wide) map id, never 0.
uint32_t next_map_id();
uint32_t next_btf_id();

} // namespace bpfmap
