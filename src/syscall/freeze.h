// MAP_FREEZE against writable mappings, across processes.
//
// The kernel refuses a freeze (EBUSY) while any writable mapping of the map exists. That
// count must span processes and forget a process that dies with mappings, so the kernel
// keeps it for us as file locks: a process holds an OFD read lock on one byte of the map's
// file, on an open file description of its own, while it has any writable mapping of the
// map (interpose/map_mmap.cc decides when). fork() shares the description, so a child's
// inherited mappings keep the lock until both have unmapped; exit and exec close it. A
// freeze takes the write lock on that byte without waiting, so any writable mapping
// anywhere makes it fail; a new hold waits out a freeze in progress, and its caller reads
// the frozen flag only then: a freeze and a writable mapping never both succeed.
#pragma once

namespace bpfmap {

struct bpf_map;

// A new description of map fd's file carrying the read lock, or -errno.
int freeze_hold(int fd);
// Let a hold from freeze_hold() go (its description is closed with the raw syscall, never
// the interposed close(), whose bookkeeping takes locks the caller may hold).
void freeze_release(int hold);

// Set the map's frozen flag unless a writable mapping of it exists in any process
// (-EBUSY) or it is frozen already (-EPERM).
int map_freeze_exclusive(int fd, bpf_map *map);

} // namespace bpfmap
